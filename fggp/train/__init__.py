"""One run end to end: RunConfig, the training loop with exact resume, and atomic run files."""

from .config import RunConfig
from .run import lr_at, run

__all__ = ["RunConfig", "lr_at", "run"]
