"""fggp: a notebook-first research kit for gradual unstructured pruning."""

__version__ = "0.1.0"
