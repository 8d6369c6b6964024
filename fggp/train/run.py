"""One training run with gradual pruning, written to its own directory and resumable to the bit.

The run directory (``<out>/<run_id>``) holds ``config.json``, ``metrics.jsonl`` (one line per epoch),
``result.json`` and ``checkpoint.pt``. The checkpoint, written at every epoch end, is the source of
truth: metrics are rewritten from it, so a kill at any instant leaves nothing duplicated or lost.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import platform
import re
import sys
import time
import fcntl
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import __version__, faults
from ..data import DeviceLoader, load_dataset, with_train_subset, with_validation
from ..models import build_model, flops
from ..provenance import source_digest
from ..pruning import NonFiniteScores, Pruner
from .checkpoint import (check_out_dir, jsonl_bytes, load_checkpoint, metrics_problem, read_result, result_problem,
                         save_checkpoint, write_json, write_metrics, write_result)
from .config import PLUGIN_DIGESTS, RunConfig

DIVERGENCE_CHECK_EVERY = 25  # optimizer steps between host syncs on the loss


def torchvision_version() -> str:
    """torchvision's ``__version__``, CUDA tag included (its package metadata lacks it), read from its
    ``version.py`` so that a run on digits does not import torchvision (about 1.5 s) just to record it."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"].__version__
    spec = importlib.util.find_spec("torchvision")
    source = Path(spec.origin).with_name("version.py").read_text()
    return re.search(r"^__version__ = ['\"]([^'\"]+)['\"]", source, re.M).group(1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} was asked for but CUDA is not available here; use cpu or auto")
    return torch.device(name)


def resolve_runtime(config: RunConfig, device: torch.device) -> dict:
    """What ``auto`` and ``None`` mean on this device: bf16 autocast and channels_last on CUDA, fp32 NCHW on CPU."""
    cuda = device.type == "cuda"
    precision = config.precision if config.precision != "auto" else ("bf16" if cuda else "fp32")
    channels_last = cuda if config.channels_last is None else config.channels_last
    return {"precision": precision, "channels_last": channels_last, "compile": config.compile,
            "deterministic": config.deterministic}


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    """Deterministic kernels for exact resume; otherwise let cuDNN pick the fastest convolution per shape.

    cuBLAS is deterministic only with a fixed workspace, which it reads from the environment when its
    first handle is made, so the variable is set before any GPU work of the run.
    """
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def lr_at(config: RunConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The learning rate of the ``step``-th minibatch (from 0) of ``epoch``: a pure function of the position,
    so a resumed run needs no scheduler state.

    ``step``: lr x lr_gamma at each milestone epoch (the paper's); ``cosine``: from lr to 0 over the steps
    after the warm-up. ``warmup_epochs`` ramps linearly from lr / warm-up steps up to lr, per step.
    """
    position = epoch * steps_per_epoch + step
    warmup = config.warmup_epochs * steps_per_epoch
    factor = (position + 1) / warmup if position < warmup else 1.0
    if config.lr_schedule == "cosine":
        span = max(config.epochs * steps_per_epoch - warmup, 1)
        done = min(max(position - warmup, 0), span)
        return config.lr * factor * 0.5 * (1 + math.cos(math.pi * done / span))
    passed = sum(1 for m in config.lr_milestones if epoch >= round(m * config.epochs))
    return config.lr * config.lr_gamma**passed * factor


def build_optimizer(config: RunConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum, the paper's; or AdamW, what transformers are trained with."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps,
                                 weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay)


def run(config: RunConfig, out_dir: str | os.PathLike = "outputs/runs", log=None, retry_diverged: bool = False) -> dict:
    """Train ``config`` in ``out_dir/<run_id>``; resume it if a checkpoint is there; return result.json.

    A completed run is not trained again: a missing or edited config.json or metrics.jsonl is rewritten
    (metrics from result.json's copy of the history, else the checkpoint's; if neither is left it says so
    and keeps the result). A result.json that does not match its digest is rebuilt from the final
    checkpoint, or refused when there is none. A diverged run is not trained again unless ``retry_diverged``.
    """
    if not isinstance(config, RunConfig):
        raise ValueError("config: expected a fggp.train.RunConfig")
    out_dir = check_out_dir(out_dir)
    device = resolve_device(config.device)
    run_dir = out_dir / config.run_id
    log = log or (lambda msg: print(msg, flush=True))

    previous = _trusted_result(run_dir, config, log)
    if previous and previous.get("status") == "completed":
        _restore_metrics(run_dir, previous, log, config)
        log(f"{config.run_id}: already completed; loaded, not trained again")
        return previous
    if previous and previous.get("status") == "diverged" and not retry_diverged:
        log(f"{config.run_id}: diverged before (step {previous.get('diverged_step')}); "
            f"retry_diverged=True (fggp run --retry-diverged) trains it again")
        return previous

    data = load_dataset(config.dataset, config.data_dir, download=config.download)
    trainer = _Trainer(config, data, device, log)  # builds model and pruner: a bad combination fails here
    run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(run_dir / ".run.lock", log):
        previous = _trusted_result(run_dir, config, lambda msg: None)
        if previous and previous.get("status") == "completed":  # finished by whoever held the lock
            return previous
        write_json(run_dir / "config.json", config.to_dict())
        trainer.attach(run_dir)
        try:
            return trainer.fit()
        except Exception as err:
            trainer.finish("failed", error=f"{type(err).__name__}: {err}")
            raise


def _trusted_result(run_dir: Path, config: RunConfig, log) -> dict | None:
    """result.json if its digest matches (or it predates digests); None when it does not but the final
    checkpoint can rebuild it (the caller then resumes there and finishes at once); else a one-line error.

    An edited "completed" result must not be returned as the run's, and a run that took hours must not
    be trained again over it without being asked.
    """
    result = read_result(run_dir)
    problem = result_problem(result)
    if problem is None:
        return result
    if result.get("status") not in ("completed", "diverged"):  # a failed run resumes and rewrites it anyway
        return None
    state = load_checkpoint(run_dir, log=lambda msg: None)
    if state is None or state["epoch"] < config.epochs:
        raise ValueError(f"result.json: {run_dir / 'result.json'} does not match its digest (edited or damaged) "
                         f"and no final checkpoint is left to rebuild it from; move the run directory away to "
                         f"train the run again")
    log(f"{config.run_id}: {problem}; rebuilding it from the final checkpoint (epoch {state['epoch']})")
    return None


def _restore_metrics(run_dir: Path, result: dict, log, config: RunConfig | None = None) -> None:
    """Rewrite what a completed run lost: config.json (from result.json's config) and metrics.jsonl (from
    result.json's copy of the history, else the checkpoint's), saying so; if no history is left, say that
    in one line and keep the result."""
    if not (run_dir / "config.json").is_file() and (result.get("config") or config is not None):
        write_json(run_dir / "config.json", result.get("config") or config.to_dict())
        log(f"{run_dir.name}: config.json rewritten from result.json")
    problem = metrics_problem(run_dir, result)
    if problem is None:
        return
    history, source = result.get("history"), "result.json's copy of the history"
    if history is None or len(history) != result.get("epochs_done"):
        state = load_checkpoint(run_dir, log=lambda msg: None)
        history, source = (state or {}).get("history"), "the checkpoint's history"
        if history is not None and (len(history) != result.get("epochs_done") or "metrics_sha256" in result and
                                    _history_sha256(history) != result["metrics_sha256"]):
            history = None
    if history is None:
        log(f"{run_dir.name}: {problem} and cannot be rebuilt (no readable checkpoint, and result.json holds no "
            f"copy of the history: it predates them); the result is kept")
        return
    write_metrics(run_dir, history)
    log(f"{run_dir.name}: {problem}; rewritten from {source} ({len(history)} epochs)")


def _history_sha256(history: list[dict]) -> str:
    return "sha256:" + hashlib.sha256(jsonl_bytes(json.loads(json.dumps(history)))).hexdigest()


@contextmanager
def _exclusive(path: Path, log):
    """One process per run directory; a second one waits (the lock dies with its holder)."""
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{path.parent.name}: another process is running this run; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class _Trainer:
    def __init__(self, config: RunConfig, data, device: torch.device, log):
        self.config, self.device, self.log = config, device, log
        self.run_dir: Path | None = None
        c = config
        self.runtime = resolve_runtime(c, device)
        _set_determinism(c.deterministic, device)
        torch.manual_seed(c.seed)
        if c.val_size:
            data = with_validation(data, c.val_size)
        if c.train_subset:
            data = with_train_subset(data, c.train_subset)
        augment = data.augment if c.augment is None else c.augment
        channels_last = self.runtime["channels_last"]
        self.train_loader = DeviceLoader(data.train, c.batch_size, train=True, mean=data.mean, std=data.std,
                                         device=device, seed=c.seed, augment=augment, channels_last=channels_last)
        self.test_loader = DeviceLoader(data.test, 500, train=False, mean=data.mean, std=data.std, device=device,
                                        channels_last=channels_last)
        self.val_loader = (DeviceLoader(data.val, 500, train=False, mean=data.mean, std=data.std, device=device,
                                        channels_last=channels_last) if data.val is not None else None)
        self.input_shape, self.num_classes = data.shape, data.num_classes
        self.model = build_model(c.arch, num_classes=data.num_classes, input_shape=data.shape).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(c, self.model)
        self.steps_per_epoch = len(self.train_loader)
        self.per_step_lr = c.lr_schedule != "step" or c.warmup_epochs > 0
        self.pruner = Pruner(
            self.model, self.optimizer, c.pruning_recipe(),
            target_sparsity=c.target_sparsity, initial_sparsity=c.initial_sparsity,
            start_step=c.prune_start_epoch * self.steps_per_epoch, end_step=c.prune_end_epoch * self.steps_per_epoch,
            prune_every=c.prune_every, total_steps=c.epochs * self.steps_per_epoch, seed=c.seed,
            include=c.include or None, exclude=c.exclude, log=log,
        )
        self.example = next(iter(self.test_loader.iter_epoch(0)))[0][:1]  # what the FLOP count feeds the model
        self.forward = torch.compile(self.model) if c.compile else self.model
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if self.runtime["precision"] == "bf16"
                         else nullcontext())
        self.history: list[dict] = []
        self.prune_log: list[list] = []
        self.epoch = 0
        self.elapsed = 0.0

    def attach(self, run_dir: Path) -> None:
        """Bind to the run directory and continue from its checkpoint, if any."""
        self.run_dir = run_dir
        self._restore()
        write_metrics(run_dir, self.history)  # derived from the checkpoint: never a row more or less

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "pruner": self.pruner.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "history": self.history,
            "prune_log": self.prune_log,
            "elapsed": self.elapsed,
        }

    def _restore(self) -> None:
        state = load_checkpoint(self.run_dir, self.log)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.pruner.load_state_dict(state["pruner"])
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.epoch, self.history = state["epoch"], state["history"]
        self.prune_log, self.elapsed = state["prune_log"], state["elapsed"]

    # -------------------------------------------------------------- training
    def fit(self) -> dict:
        c = self.config
        while self.epoch < c.epochs:
            started = time.perf_counter()
            try:
                train_loss, train_acc, bad_step = self._train_epoch(self.epoch)
            except NonFiniteScores as err:
                if not err.diverged:  # the order's own scores: a faulty criterion, a failed run
                    raise
                bad_step = self.pruner.step  # weights or gradients went non-finite before the loss check saw it
            if bad_step is not None:
                return self.finish("diverged", diverged_step=bad_step)
            test_loss, test_acc = self.evaluate()
            running = {}
            if c.bn_recalibrate:
                running = {"test_loss_running_bn": test_loss, "test_acc_running_bn": test_acc}
                self.recalibrate_bn(self.epoch)
                test_loss, test_acc = self.evaluate()
            val = dict(zip(("val_loss", "val_acc"), self.evaluate(self.val_loader))) if self.val_loader else {}
            self.elapsed += time.perf_counter() - started
            row = {"epoch": self.epoch + 1, "train_loss": train_loss, "train_acc": train_acc, **val,
                   "test_loss": test_loss, "test_acc": test_acc, "lr": lr_at(c, self.epoch, 0, self.steps_per_epoch),
                   "sparsity": self.pruner.sparsity, "step": self.pruner.step,
                   "seconds": time.perf_counter() - started, **running}
            self.history.append(row)
            self.epoch += 1
            save_checkpoint(self.run_dir, self._state())
            faults.reach("epoch_end")
            write_metrics(self.run_dir, self.history)
            self.log(f"epoch {row['epoch']}/{c.epochs}  train {train_loss:.4f} / {train_acc:.4f}  "
                     + (f"val {val['val_loss']:.4f} / {val['val_acc']:.4f}  " if val else "")
                     + f"test {test_loss:.4f} / {test_acc:.4f}  sparsity {row['sparsity']:.4f}  {row['seconds']:.1f}s")
        return self.finish("completed")

    def _train_epoch(self, epoch: int):
        c = self.config
        self._set_lr(epoch, 0)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        first_bad = None
        bar = tqdm(self.train_loader.iter_epoch(epoch), total=self.steps_per_epoch, desc=f"epoch {epoch + 1}",
                   leave=False, disable=_bar_disabled(c.progress), file=sys.stderr)
        pending = []
        for i, (x, y) in enumerate(bar):
            if self.per_step_lr:
                self._set_lr(epoch, i)
            with self.autocast:
                logits = self.forward(x)
                loss = nn.functional.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.pruner.before_step()
            self.optimizer.step()
            pruned = self.pruner.schedule.is_pruning_step(self.pruner.step + 1) and self.pruner.recipe.prunes
            self.pruner.after_step()
            faults.reach("step")
            if pruned:
                self.prune_log.append([self.pruner.step, self.pruner.schedule.sparsity(self.pruner.step), self.pruner.sparsity])
            loss_sum += loss.detach().float() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            pending.append(loss.detach())
            if len(pending) >= DIVERGENCE_CHECK_EVERY:
                first_bad = self._first_bad(pending)
                pending = []
                if first_bad is not None:
                    break
        if first_bad is None and pending:
            first_bad = self._first_bad(pending)
        bar.close()
        if first_bad is not None:
            return None, None, first_bad
        return loss_sum.item() / seen, correct.item() / seen, None

    def _set_lr(self, epoch: int, step: int) -> None:
        lr = lr_at(self.config, epoch, step, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _first_bad(self, losses) -> int | None:
        """Global step of the first non-finite loss among the last ``len(losses)`` steps (one host sync)."""
        finite = torch.isfinite(torch.stack(losses).float()).tolist()
        if all(finite):
            return None
        return self.pruner.step - len(losses) + finite.index(False) + 1

    @torch.no_grad()
    def recalibrate_bn(self, epoch: int) -> None:
        """Re-estimate every BatchNorm's running statistics on the first ``bn_recalibrate`` batches of ``epoch``.

        In training they are an exponential average over the last few steps; when the weights move fast
        (a high lr, a pruning step just before the evaluation) they lag behind, and eval-mode accuracy
        collapses while train accuracy does not. Training normalizes with batch statistics, so the
        training trajectory is the same with or without this; only what evaluation sees changes.
        """
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below, not a decay from the old stats
        self.model.train()
        for _, (x, _y) in zip(range(self.config.bn_recalibrate), self.train_loader.iter_epoch(epoch)):
            with self.autocast:
                self.forward(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def evaluate(self, loader: DeviceLoader | None = None) -> tuple[float, float]:
        """Loss and accuracy over ``loader`` (the test split by default), unaugmented, in order."""
        loader = loader or self.test_loader
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for x, y in loader.iter_epoch(0):
            with self.autocast:
                logits = self.forward(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        n = len(loader.labels)
        return loss_sum.item() / n, correct.item() / n

    # ----------------------------------------------------------------- result
    def finish(self, status: str, **extra) -> dict:
        c = self.config
        densities = self.pruner.densities()
        last = self.history[-1] if self.history else {}
        # Model selection on the validation split only: the first epoch with the highest val accuracy.
        best_val = max((h for h in self.history if "val_acc" in h), key=lambda h: h["val_acc"], default={})
        result = {
            "status": status,
            "run_id": c.run_id,
            "final_test_acc": last.get("test_acc"),
            "best_val_acc": best_val.get("val_acc"),
            "best_val_epoch": best_val.get("epoch"),
            "test_acc_at_best_val": best_val.get("test_acc"),
            "best_test_acc": max((h["test_acc"] for h in self.history), default=None),
            "best_test_acc_note": "maximum over epochs of the TEST accuracy: optimistic, for reference only",
            "final_sparsity": self.pruner.sparsity,
            "layer_density": densities,
            "layer_shapes": {n: list(m.shape) for n, m in self.pruner.masks.items()},
            "layer_order": list(self.pruner.names),  # input to output (the keys above are sorted by name)
            "mask_hash": self.pruner.mask_hash(),
            "kept_weights": self.pruner.active,
            "prunable_weights": self.pruner.total,
            "dense_flops": flops(self.model, example=self.example),
            "sparse_flops": flops(self.model, densities, example=self.example),
            "epochs_done": self.epoch,
            "steps_done": self.pruner.step,
            "wall_seconds": self.elapsed,
            "device": _device_name(self.device),
            "runtime": self.runtime,
            "versions": {"fggp": __version__, "fggp_source": source_digest(), "torch": torch.__version__,
                         "torchvision": torchvision_version(), "python": platform.python_version()},
            "seed": c.seed,
            "config": c.to_dict(),
            "recipe": self.pruner.recipe.to_dict(),
            "prune_log": self.prune_log,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }
        if status == "completed":  # the pruned network, actually smaller: kept weights only, no pickle
            result["model_bytes"] = self._save_sparse()
        write_metrics(self.run_dir, self.history)
        result = write_result(self.run_dir, result, self.history)  # with the history and a digest over both
        self.log(f"{c.run_id}: {status}"
                 + (f", final test acc {result['final_test_acc']:.4f} at sparsity {result['final_sparsity']:.4f}"
                    if result["final_test_acc"] is not None and status == "completed" else "")
                 + (f" at step {extra['diverged_step']}" if "diverged_step" in extra else ""))
        return result

    def _save_sparse(self) -> dict:
        """``model.sparse.safetensors`` beside the checkpoint (``fggp.export.load`` rebuilds the model from it),
        and its bytes against those of the dense state_dict."""
        from ..sparse import FILENAME, dense_bytes, model_metadata, save_sparse

        c = self.config
        state = self.model.state_dict()
        metadata = model_metadata(c.arch, self.input_shape, self.num_classes, plugins=c.plugins,
                                  plugin_digests={p: PLUGIN_DIGESTS.get(p) for p in c.plugins}, run_id=c.run_id)
        masks = self.pruner.masks if self.pruner.recipe.prunes else {}  # dense: every tensor as it is
        sparse = save_sparse(state, masks, self.run_dir / FILENAME, metadata)
        return {"dense": dense_bytes(state), "sparse": sparse}


def _bar_disabled(progress: bool) -> bool | None:
    """Off with progress=False or TQDM_DISABLE=1; otherwise tqdm's own choice (off when not a terminal)."""
    if not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return True
    return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


__all__ = ["run", "lr_at", "build_optimizer", "resolve_device", "resolve_runtime"]
