"""Export a finished run as files that are as small as its pruning allows, and say what it buys at inference.

A run leaves a masked dense checkpoint (weights, masks, optimizer state): larger than the dense model.
``export_run`` writes ``<run_dir>/export/``:

- ``model.pt``: the plain state_dict, masks folded in (``torch.load(weights_only=True)`` + ``load_state_dict``);
- ``model.sparse.safetensors``: the same weights, masked tensors compressed (``fggp.sparse``), with what is
  needed to rebuild the model (arch, input shape, classes, plugins): ``load(out_dir)``;
- ``model.onnx`` when ``torch.onnx`` can write it here (the ``onnx`` package is not a dependency);
- ``export.json``: bytes of each file against the dense state_dict and the checkpoint, per-layer layout and
  kernel, the FLOP ratio, and the measured latency of the dense model against the sparse one (masked
  Linear layers through torch.sparse CSR matmuls on CPU), so the gain is measured rather than assumed.

Every file is staged under a temporary name and renamed only once all of them are written, so a failure
leaves a previous export as it was and no half-written file.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import statistics
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .data import dataset_info
from .models import build_model
from .models.flops import _takes_ids
from .provenance import source_digest
from .sparse import FILENAME as SPARSE_FILE
from .sparse import (dense_bytes, fold_masks, is_nm, load_sparse, model_metadata, quiet_sparse_warnings, read_header,
                     save_sparse)
from .train import RunConfig
from .train.checkpoint import CHECKPOINT, check_out_dir, load_checkpoint, read_result
from .train.config import PLUGIN_DIGESTS, load_plugins

EXPORT_FORMAT = "fggp-export"
EXPORT_VERSION = 1
MODEL_FILE = "model.pt"
ONNX_FILE = "model.onnx"
JSON_FILE = "export.json"
WARMUP = 3  # untimed forwards per model and batch size before timing
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


# ------------------------------------------------------------------------------------------ sparse model
class CSRLinear(nn.Module):
    """A Linear whose weight is a torch.sparse CSR matrix: ``y = (W_csr @ x.T).T + b``, work in kept weights."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = torch.where(mask.to(linear.weight.device), linear.weight.detach(), 0)
        with quiet_sparse_warnings():
            self.register_buffer("weight_csr", weight.to_sparse_csr(), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().unsqueeze(1).clone()
        self.register_buffer("bias_column", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).T  # [in, batch]: a transposed view, no copy
        y = (torch.sparse.mm(self.weight_csr, x2) if self.bias_column is None
             else torch.addmm(self.bias_column, self.weight_csr, x2))
        return y.T.reshape(*x.shape[:-1], self.out_features)  # a view: the next CSRLinear's x2 is contiguous

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kept={self.weight_csr.values().numel()}"


class SemiStructuredLinear(nn.Module):
    """A Linear with a 2:4 weight through ``torch.sparse.to_sparse_semi_structured`` (CUDA, fp16/bf16)."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor):
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        weight = torch.where(mask.to(linear.weight.device), linear.weight.detach(), 0)
        self.weight = nn.Parameter(to_sparse_semi_structured(weight), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        with torch.no_grad():  # fail here, not in the middle of a measurement, when the shape is unsupported
            self.forward(torch.zeros(64, linear.in_features, device=weight.device, dtype=weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def plan_kernels(model: nn.Module, masks: dict, device="cpu") -> dict[str, str]:
    """Per masked tensor, which kernel ``sparse_model`` gives it on ``device``, and why when dense."""
    device = torch.device(device)
    plan = {}
    for name, mask in masks.items():
        prefix, _, attr = name.rpartition(".")
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            module = None
        if attr != "weight" or module is None:
            plan[name] = "dense (not a module's weight)"
        elif type(module) is nn.Linear:  # a subclass may not call its own forward (MultiheadAttention.out_proj)
            if device.type == "cpu":
                plan[name] = "csr"
            elif device.type == "cuda" and is_nm(mask, 2, 4):
                plan[name] = "2:4 semi-structured"
            else:
                plan[name] = f"dense (unstructured sparsity has no faster kernel on {device.type})"
        elif isinstance(module, _CONV):
            plan[name] = f"dense (no sparse kernel for conv on {device.type})"
        else:
            plan[name] = f"dense (no sparse kernel for {type(module).__name__})"
    return plan


def sparse_model(model: nn.Module, masks: dict, *, device="cpu") -> nn.Module:
    """A copy of ``model`` (eval mode, on ``device``, masks folded in) in which every masked plain nn.Linear
    runs through a sparse kernel: CSR on CPU, 2:4 semi-structured on CUDA where the mask fits. The chosen
    kernel per masked tensor is in the returned module's ``kernels`` dict."""
    device = torch.device(device)
    sparse = copy.deepcopy(model).to(device).eval()
    with torch.no_grad():
        params = dict(sparse.named_parameters(remove_duplicate=False))
        for name, mask in masks.items():
            if name in params:
                params[name].mul_(mask.to(device=device, dtype=params[name].dtype))
    kernels = plan_kernels(sparse, masks, device)
    for name, kernel in kernels.items():
        if kernel == "csr" or kernel.startswith("2:4"):
            prefix = name.rpartition(".")[0]
            parent_name, _, child = prefix.rpartition(".")
            parent, linear = sparse.get_submodule(parent_name), sparse.get_submodule(prefix)
            try:
                new = CSRLinear(linear, masks[name]) if kernel == "csr" else SemiStructuredLinear(linear, masks[name])
            except Exception as err:  # 2:4 needs fp16/bf16 and shapes cuSPARSELt / CUTLASS take
                kernels[name] = f"dense (2:4 kernel unavailable: {_one_line(err)})"
                continue
            setattr(parent, child, new)
    sparse.kernels = kernels
    return sparse


# ---------------------------------------------------------------------------------------------- latency
def _inputs(model: nn.Module, input_shape, batch: int, device) -> torch.Tensor:
    if _takes_ids(model):
        return torch.zeros((batch, *input_shape), dtype=torch.long, device=device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.get_default_dtype())
    return torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(batch)).to(device, dtype)


def measure_latency(dense: nn.Module, sparse: nn.Module, input_shape, batch_sizes=(1, 64, 256), repeats: int = 20,
                    *, device="cpu", warmup: int = WARMUP) -> dict:
    """Median milliseconds of one full forward (eval, no_grad) of each model per batch size, after ``warmup``
    untimed ones. Dense and sparse alternate repeat by repeat, so a change in the machine's load hits both."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    dense, sparse = dense.to(device).eval(), sparse.to(device).eval()
    load_before = os.getloadavg()
    rows = {}
    with torch.no_grad():
        for batch in batch_sizes:
            x = _inputs(dense, input_shape, batch, device)
            times = {"dense": [], "sparse": []}
            outputs = {"dense": dense(x), "sparse": sparse(x)}
            diff = float((outputs["dense"].float() - outputs["sparse"].float()).abs().max())
            for _ in range(warmup):
                dense(x), sparse(x)
            sync()
            for _ in range(repeats):
                for key, m in (("dense", dense), ("sparse", sparse)):
                    start = time.perf_counter()
                    m(x)
                    sync()
                    times[key].append(time.perf_counter() - start)
            d, s = statistics.median(times["dense"]) * 1e3, statistics.median(times["sparse"]) * 1e3
            rows[str(batch)] = {"dense_ms": d, "sparse_ms": s, "speedup": d / s, "max_abs_diff": diff}
    return {"device": _device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "repeats": repeats, "warmup": warmup, "statistic": "median", "batch_sizes": rows,
            "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# ------------------------------------------------------------------------------------------------ export
def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def _check_options(batch_sizes, repeats, measure) -> tuple[int, ...]:
    if (not isinstance(batch_sizes, (list, tuple)) or not batch_sizes
            or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in batch_sizes)):
        raise ValueError(f"batch_sizes: {batch_sizes!r} must be a non-empty list of positive integers")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: {repeats!r} must be an integer >= 1")
    if not isinstance(measure, bool):
        raise ValueError(f"measure: {measure!r} must be true or false")
    return tuple(batch_sizes)


def _load_run(run_dir: Path, log) -> tuple[dict, RunConfig, dict]:
    """result.json, the RunConfig (plugins imported) and the final checkpoint of a completed run, or a
    one-line ValueError naming run_dir."""
    if not run_dir.is_dir():
        raise ValueError(f"run_dir: {str(run_dir)!r} is not a directory")
    result = read_result(run_dir)
    if result is None:
        raise ValueError(f"run_dir: {str(run_dir)!r} has no readable result.json (the run has not finished)")
    status = result.get("status")
    if status != "completed":
        raise ValueError(f"run_dir: {str(run_dir)!r} is a {status} run; only a completed run can be exported")
    try:
        config_dict = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"run_dir: {str(run_dir)!r} has no readable config.json ({_one_line(err)})") from None
    config = RunConfig.from_dict(config_dict)  # imports its plugins; a bad field or plugin is its own one line
    state = load_checkpoint(run_dir, log=lambda msg: None if "resuming from" in msg else log(msg))
    if state is None:
        raise ValueError(f"run_dir: {str(run_dir)!r} has no usable checkpoint ({CHECKPOINT} missing or damaged, "
                         f"and no readable previous one)")
    if state["epoch"] != result.get("epochs_done"):
        raise ValueError(f"run_dir: {str(run_dir)!r} {CHECKPOINT} is damaged and the readable one holds epoch "
                         f"{state['epoch']}, not the final epoch {result.get('epochs_done')}")
    return result, config, state


def _write_tmp(out_dir: Path, name: str, payload: bytes) -> Path:
    """``payload`` in a temp file of ``out_dir`` (0666 less the umask, fsynced); renamed later by the caller."""
    tmp = out_dir / f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _onnx_bytes(model: nn.Module, example: torch.Tensor) -> tuple[bytes | None, dict]:
    """The model as ONNX (legacy TorchScript exporter first, then the dynamo one if onnxscript is there)."""
    reasons = []
    attempts = [("torchscript", False)]
    if importlib.util.find_spec("onnxscript") is not None:
        attempts.append(("dynamo", True))
    for exporter, dynamo in attempts:
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), buffer, dynamo=dynamo, input_names=["input"],
                                  output_names=["logits"],
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except Exception as err:  # no onnx package, an operator the exporter lacks, ...
            reasons.append(f"{exporter}: {_one_line(err)}")
            continue
        return buffer.getvalue(), {"written": True, "exporter": exporter}
    return None, {"written": False, "reason": "; ".join(reasons)}


def export_run(run_dir, out_dir=None, *, batch_sizes=(1, 64, 256), repeats: int = 20, measure: bool = True,
               device="cpu", log=print) -> dict:
    """Export a completed run into ``out_dir`` (default ``<run_dir>/export``); return what export.json holds.

    ``measure`` times the dense and the sparse model at each of ``batch_sizes`` on ``device`` (median of
    ``repeats``). A run that is not completed, a missing or damaged result or checkpoint, or an ``out_dir``
    that is a file is a one-line ValueError; nothing is written then.
    """
    batch_sizes = _check_options(batch_sizes, repeats, measure)
    run_dir = Path(run_dir).absolute()
    out_dir = check_out_dir(out_dir if out_dir is not None else run_dir / "export", field="out_dir")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {device!r} is not a device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(device)!r} was asked for but CUDA is not available here")
    result, config, state = _load_run(run_dir, log)

    info = dataset_info(config.dataset)
    input_shape, num_classes = tuple(info["input_shape"]), int(info["num_classes"])
    masks = {n: m.cpu().bool() for n, m in state["pruner"]["masks"].items()}
    folded = fold_masks(state["model"], masks)
    model = build_model(config.arch, num_classes=num_classes, input_shape=input_shape)
    try:
        model.load_state_dict(folded, strict=True)
    except RuntimeError as err:
        raise ValueError(f"run_dir: {str(run_dir)!r} checkpoint does not fit {config.arch} built for "
                         f"{input_shape} ({_one_line(err)})") from None
    model.eval()
    plugins = list(config.plugins)
    metadata = model_metadata(config.arch, input_shape, num_classes, plugins=plugins,
                              plugin_digests={p: PLUGIN_DIGESTS.get(p, "not imported") for p in plugins},
                              dataset=config.dataset, run_id=result.get("run_id"),
                              final_test_acc=result.get("final_test_acc"), final_sparsity=result.get("final_sparsity"),
                              fggp=__version__, torch=torch.__version__)

    out_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        buffer = io.BytesIO()
        torch.save(folded, buffer)
        staged[MODEL_FILE] = _write_tmp(out_dir, MODEL_FILE, buffer.getvalue())
        staged[SPARSE_FILE] = out_dir / f".{SPARSE_FILE}.{uuid.uuid4().hex[:12]}.tmp"
        save_sparse(folded, masks, staged[SPARSE_FILE], metadata)
        back, back_masks, _ = load_sparse(staged[SPARSE_FILE])  # what load() will see: exact, or no export
        if (list(back) != list(folded) or any(not torch.equal(back[k], folded[k]) for k in folded)
                or any(not torch.equal(back_masks[k], masks[k]) for k in masks)):
            raise RuntimeError(f"{SPARSE_FILE} does not read back to the run's weights")
        layouts = read_header(staged[SPARSE_FILE])["sparse"]

        example = _inputs(model, input_shape, 1, "cpu")
        onnx_payload, onnx_info = _onnx_bytes(model, example)
        if onnx_payload is not None:
            staged[ONNX_FILE] = _write_tmp(out_dir, ONNX_FILE, onnx_payload)

        kernels = plan_kernels(model, masks, device if measure else "cpu")
        latency = None
        if measure:
            sparse = sparse_model(model, masks, device=device)
            kernels = sparse.kernels
            latency = measure_latency(copy.deepcopy(model), sparse, input_shape, batch_sizes, repeats, device=device)
            log(f"export: latency on {latency['device']} ({latency['threads']} threads), dense / sparse ms: "
                + ", ".join(f"batch {b} {r['dense_ms']:.3f} / {r['sparse_ms']:.3f} (x{r['speedup']:.2f})"
                            for b, r in latency["batch_sizes"].items()))

        order = [n for n in result.get("layer_order") or [] if n in masks]
        order += sorted(set(masks) - set(order))
        layers = {}
        for name in order:
            mask = masks[name]
            kept = int(mask.sum())
            layers[name] = {"shape": list(mask.shape), "size": mask.numel(), "kept": kept,
                            "density": kept / mask.numel(), "layout": layouts[name]["layout"],
                            "nm": "2:4" if is_nm(mask, 2, 4) else None, "kernel": kernels[name]}
        files = {name: path.stat().st_size for name, path in staged.items()}
        checkpoint = run_dir / CHECKPOINT
        sizes = {"dense_state_dict": dense_bytes(folded), "checkpoint": checkpoint.stat().st_size, **files}
        dense_flops, sparse_flops = result.get("dense_flops"), result.get("sparse_flops")
        report = {
            "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run_dir": str(run_dir), "run_id": result.get("run_id"),
            "arch": config.arch, "dataset": config.dataset, "input_shape": list(input_shape),
            "num_classes": num_classes, "plugins": plugins, "plugin_digests": metadata["plugin_digests"],
            "final_test_acc": result.get("final_test_acc"), "final_sparsity": result.get("final_sparsity"),
            "files": files, "bytes": sizes,
            "ratios": {"sparse_over_dense": files[SPARSE_FILE] / sizes["dense_state_dict"],
                       "sparse_over_checkpoint": files[SPARSE_FILE] / sizes["checkpoint"],
                       "checkpoint_over_dense": sizes["checkpoint"] / sizes["dense_state_dict"]},
            "layer_order": order, "layers": layers,
            "flops": {"dense": dense_flops, "sparse": sparse_flops,
                      "ratio": dense_flops / sparse_flops if dense_flops and sparse_flops else None},
            "onnx": {**onnx_info, **({"bytes": files[ONNX_FILE]} if ONNX_FILE in files else {})},
            "latency": latency,
            "notes": ["nm '2:4' says the mask fits the 2:4 pattern (an unstructured mask at high sparsity often "
                      "does by chance); a 2:4 kernel computes at 50% density whatever the mask keeps",
                      "2:4 semi-structured kernels are used on CUDA only, and are untested where this was written "
                      "(no GPU)"],
            "versions": {"fggp": __version__, "fggp_source": source_digest(), "torch": torch.__version__},
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        staged[JSON_FILE] = _write_tmp(out_dir, JSON_FILE,
                                       (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
        for name in (MODEL_FILE, SPARSE_FILE, ONNX_FILE, JSON_FILE):  # export.json last: it vouches for the rest
            if name in staged:
                os.replace(staged.pop(name), out_dir / name)
        if ONNX_FILE not in files:
            (out_dir / ONNX_FILE).unlink(missing_ok=True)  # a previous export's, not this one's
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    log(f"export: {out_dir}: {SPARSE_FILE} {files[SPARSE_FILE]:,} bytes, "
        f"{report['ratios']['sparse_over_dense']:.3f}x the dense state_dict ({sizes['dense_state_dict']:,}), "
        f"{report['ratios']['sparse_over_checkpoint']:.3f}x the checkpoint ({sizes['checkpoint']:,})")
    return report


def load(out_dir, *, sparse: bool = False) -> nn.Module:
    """The exported model (eval mode) rebuilt from ``model.sparse.safetensors`` alone, importing the plugins its
    metadata names; its state_dict equals the run's final masked weights. ``sparse=True``: through
    ``sparse_model`` (CSR Linear layers on CPU) instead. ``out_dir`` may also be the file itself."""
    path = Path(out_dir)
    if path.is_dir():
        path = path / SPARSE_FILE
    state_dict, masks, meta = load_sparse(path)
    for key in ("arch", "input_shape", "num_classes"):
        if key not in meta:
            raise ValueError(f"{path}: its metadata lacks {key!r}; it was not written by export_run")
    plugins = load_plugins(list(meta.get("plugins") or []))
    for plugin in plugins:
        recorded = (meta.get("plugin_digests") or {}).get(plugin)
        if recorded and PLUGIN_DIGESTS.get(plugin) != recorded:
            warnings.warn(f"plugins: {plugin} changed since the export (source digest {PLUGIN_DIGESTS.get(plugin)}, "
                          f"exported with {recorded})", stacklevel=2)
    model = build_model(meta["arch"], num_classes=meta["num_classes"], input_shape=tuple(meta["input_shape"]))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: its tensors do not fit {meta['arch']} ({_one_line(err)})") from None
    model.eval()
    return sparse_model(model, masks) if sparse else model


__all__ = ["CSRLinear", "SemiStructuredLinear", "export_run", "load", "measure_latency", "plan_kernels",
           "sparse_model"]
