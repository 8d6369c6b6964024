"""A pruned model's weights in the bytes they deserve: masked tensors compressed, the rest dense, one file.

A run's checkpoint holds dense weights plus a bool mask each, so pruning makes nothing smaller on disk.
``save_sparse`` writes ``model.sparse.safetensors``: each masked tensor in the smaller of two layouts over
its weight flattened to 2-D ``[shape[0], prod(shape[1:])]`` (CSR: values, int32 column indices, int32 row
pointers; or bitmask: the mask's packed bits and the kept values), every other tensor as it is. The layout,
shape and dtype of each compressed tensor and the caller's metadata (arch, input shape, plugins, ...) go
into the safetensors header as JSON, with a SHA-256 of every tensor stored, so a damaged file is refused
rather than loaded wrong. Only torch, numpy, safetensors and the standard library are imported here: the
training loop imports this module.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as _safetensors_bytes

FILENAME = "model.sparse.safetensors"
FORMAT = "fggp-sparse"
VERSION = 1
HEADER_KEY = "fggp"
SEP = "::"  # <name>::csr_values etc.; a state_dict key holding it is refused
LAYOUTS = ("csr", "bitmask")
_INDEX = torch.int32
_INDEX_BYTES = 4


@contextmanager
def quiet_sparse_warnings():
    """Silence torch's "sparse CSR support is in beta" warning: it is printed on every first use and says
    nothing about this use."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        yield


def flat2d(shape) -> tuple[int, int]:
    """``[shape[0], prod(shape[1:])]``: rows are output units (channels), columns their inputs."""
    shape = tuple(shape)
    if not shape:
        return 1, 1
    return shape[0], math.prod(shape[1:])


def layout_bytes(mask: torch.Tensor, itemsize: int) -> dict[str, int]:
    """Bytes each layout takes for ``mask`` with values of ``itemsize`` bytes (headers aside)."""
    kept = int(mask.sum())
    rows, _ = flat2d(mask.shape)
    return {"csr": kept * (itemsize + _INDEX_BYTES) + (rows + 1) * _INDEX_BYTES,
            "bitmask": (mask.numel() + 7) // 8 + kept * itemsize}


def choose_layout(mask: torch.Tensor, itemsize: int) -> str:
    """The smaller layout; CSR on a tie."""
    sizes = layout_bytes(mask, itemsize)
    return "bitmask" if sizes["bitmask"] < sizes["csr"] else "csr"


def is_nm(mask: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """Whether every group of ``m`` consecutive weights along the input dimension (the last of the 2-D
    flattening) keeps at most ``n``: the pattern semi-structured kernels (2:4) accelerate."""
    if not (isinstance(n, int) and isinstance(m, int) and 0 <= n <= m and m >= 1):
        raise ValueError(f"n, m: {n}:{m} must be integers with 0 <= n <= m, m >= 1")
    rows, cols = flat2d(mask.shape)
    if cols % m:
        return False
    return bool((mask.reshape(rows, cols // m, m).sum(-1) <= n).all())


def fold_masks(state_dict: dict, masks: dict) -> dict:
    """The state_dict on the CPU, contiguous, each masked tensor's pruned entries set to +0.0: the weights a
    pruned model really has, as a plain state_dict any ``load_state_dict`` takes."""
    out = {}
    for name, value in state_dict.items():
        value = value.detach().cpu().contiguous()
        if name in masks:
            value = torch.where(masks[name].cpu().bool(), value, torch.zeros((), dtype=value.dtype))
        out[name] = value
    return out


def model_metadata(arch: str, input_shape, num_classes: int, *, plugins=(), plugin_digests=None, **extra) -> dict:
    """The metadata ``fggp.export.load`` rebuilds a model from (arch, one sample's shape, classes, the plugins
    that register the arch and their source digests), plus any JSON-serializable ``extra`` (run_id, ...)."""
    return {"arch": arch, "input_shape": [int(d) for d in input_shape], "num_classes": int(num_classes),
            "plugins": [str(p) for p in plugins], "plugin_digests": dict(plugin_digests or {}), **extra}


def dense_bytes(state_dict: dict) -> int:
    """Bytes of ``torch.save(state_dict)``, measured in memory: what a plain dense copy of the weights costs."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return buffer.getbuffer().nbytes


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _encode(name: str, weight: torch.Tensor, mask: torch.Tensor) -> tuple[str, dict[str, torch.Tensor]]:
    rows, cols = flat2d(weight.shape)
    if max(rows + 1, cols, int(mask.sum())) > torch.iinfo(_INDEX).max:
        raise ValueError(f"masks: {name} is too large for int32 indices ({list(weight.shape)})")
    w2, m2 = weight.reshape(rows, cols), mask.reshape(rows, cols)
    values = w2[m2]  # row-major order: the order of CSR's entries and of the set bits alike
    layout = choose_layout(mask, weight.element_size())
    if layout == "csr":
        with quiet_sparse_warnings():
            csr = m2.to_sparse_csr()
        return layout, {f"{name}{SEP}csr_values": values, f"{name}{SEP}csr_col": csr.col_indices().to(_INDEX),
                        f"{name}{SEP}csr_crow": csr.crow_indices().to(_INDEX)}
    bits = torch.from_numpy(np.packbits(m2.reshape(-1).numpy()))
    return layout, {f"{name}{SEP}bitmask": bits, f"{name}{SEP}values": values}


def save_sparse(state_dict: dict, masks: dict, path, metadata: dict) -> int:
    """Write ``state_dict`` to ``path`` with every tensor named in ``masks`` compressed; return the file's bytes.

    Only the positions a mask keeps are stored, so what is read back is the weight with its pruned entries
    zero (exactly equal to the masked weights). ``metadata`` (JSON-serializable) is stored with the layouts.
    The file is written to a temporary name beside ``path`` and renamed, so it is whole or absent.
    """
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ValueError("state_dict: expected a dict of tensors")
    if not isinstance(masks, dict):
        raise ValueError("masks: expected a dict of bool tensors named like state_dict's")
    unknown = sorted(set(masks) - set(state_dict))
    if unknown:
        raise ValueError(f"masks: {unknown[0]} is not in state_dict")
    if not isinstance(metadata, dict):
        raise ValueError("metadata: expected a dict")
    tensors: dict[str, torch.Tensor] = {}
    layouts: dict[str, dict] = {}
    for name, value in state_dict.items():
        if SEP in name:
            raise ValueError(f"state_dict: key {name!r} contains {SEP!r}, which the sparse file reserves")
        value = value.detach().cpu().contiguous()
        if name not in masks:
            tensors[name] = value.clone()  # safetensors refuses tensors sharing memory (tied weights)
            continue
        mask = masks[name].detach().cpu()
        if mask.dtype != torch.bool or mask.shape != value.shape:
            raise ValueError(f"masks: {name} must be a bool tensor of shape {list(value.shape)}, "
                             f"got {mask.dtype} {list(mask.shape)}")
        layout, parts = _encode(name, value, mask.contiguous())
        tensors.update({k: v.contiguous().clone() for k, v in parts.items()})
        layouts[name] = {"layout": layout, "shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", ""),
                         "kept": int(mask.sum())}
    header = {"format": FORMAT, "version": VERSION, "order": list(state_dict), "sparse": layouts,
              "sha256": _digest(tensors), "metadata": metadata}
    try:
        text = json.dumps(header, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata: not JSON-serializable ({err})") from None
    payload = _safetensors_bytes(tensors, metadata={HEADER_KEY: text})
    path = Path(path)
    _atomic_write(path, payload)
    return path.stat().st_size


def _atomic_write(path: Path, payload: bytes) -> None:
    """``payload`` to a temp file beside ``path`` (mode 0666 less the umask, as ``open`` gives), then renamed."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_header(path) -> dict:
    """The file's fggp header (format, version, order, per-tensor layouts, metadata), without its tensors."""
    return _open(path)[0]


def _open(path) -> tuple[dict, dict[str, torch.Tensor]]:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(HEADER_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # missing, truncated, not safetensors at all
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a readable safetensors file ({reason})") from None
    try:
        header = json.loads(text) if text is not None else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an fggp sparse file (no {FORMAT} header)")
    if header.get("version") != VERSION:
        raise ValueError(f"{path}: {FORMAT} version {header.get('version')!r}; this fggp reads version {VERSION}")
    if _digest(tensors) != header.get("sha256"):
        raise ValueError(f"{path}: damaged (its tensors do not match the digest in its header)")
    return header, tensors


def _decode(name: str, info: dict, tensors: dict) -> tuple[torch.Tensor, torch.Tensor]:
    shape = tuple(info["shape"])
    rows, cols = flat2d(shape)
    if info["layout"] == "csr":
        values = tensors[f"{name}{SEP}csr_values"]
        crow, col = tensors[f"{name}{SEP}csr_crow"].long(), tensors[f"{name}{SEP}csr_col"].long()
        if crow.numel() != rows + 1 or col.numel() != values.numel():
            raise ValueError("CSR index lengths do not fit the shape")
        # invariants checked: bad indices in a crafted file raise instead of writing anywhere
        with quiet_sparse_warnings(), torch.sparse.check_sparse_tensor_invariants():
            dense = torch.sparse_csr_tensor(crow, col, values, size=(rows, cols)).to_dense()
            mask = torch.sparse_csr_tensor(crow, col, torch.ones_like(values, dtype=torch.bool),
                                           size=(rows, cols)).to_dense()
    elif info["layout"] == "bitmask":
        values = tensors[f"{name}{SEP}values"]
        mask = torch.from_numpy(np.unpackbits(tensors[f"{name}{SEP}bitmask"].numpy(), count=rows * cols)
                                .astype(bool))
        if int(mask.sum()) != values.numel():
            raise ValueError("the bitmask's set bits do not match the number of values")
        dense = torch.zeros(rows * cols, dtype=values.dtype)
        dense[mask] = values
    else:
        raise ValueError(f"unknown layout {info['layout']!r}")
    if str(values.dtype).replace("torch.", "") != info["dtype"]:
        raise ValueError(f"values are {values.dtype}, the header says {info['dtype']}")
    return dense.reshape(shape), mask.reshape(shape)


def load_sparse(path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """``(state_dict, masks, metadata)`` from a ``save_sparse`` file: dense tensors (pruned entries zero),
    the bool masks, and the caller's metadata. A damaged or foreign file is a one-line ValueError naming it."""
    header, tensors = _open(path)
    state_dict, masks = {}, {}
    try:
        for name in header["order"]:
            info = header["sparse"].get(name)
            if info is None:
                state_dict[name] = tensors[name]
            else:
                state_dict[name], masks[name] = _decode(name, info, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a valid {FORMAT} file ({type(err).__name__}: {reason})") from None
    return state_dict, masks, header.get("metadata", {})


__all__ = ["FILENAME", "choose_layout", "dense_bytes", "flat2d", "fold_masks", "is_nm", "layout_bytes", "load_sparse",
           "model_metadata", "quiet_sparse_warnings", "read_header", "save_sparse"]
