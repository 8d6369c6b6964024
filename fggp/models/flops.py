"""Per-layer multiply-accumulate counts and (sparse) FLOPs of any classifier: convolutions, linears, attention.

Counts are keyed by the weight's parameter name (as in `model.named_parameters()`), the same keys the
pruning engine uses for masks and densities, so a sparse model's FLOPs are just each layer's MACs scaled by
the density of its weight. The two matmuls inside attention (QK^T and AV) have no weight to prune; they are
kept under ``<mha>.attention``, a key no density ever scales, so a transformer's sparse FLOPs do not
pretend that pruning removed them.

What is counted, per call (a module called twice counts twice), for one sample:
  Linear                 in * out per token (every leading position of its input but the batch)
  Conv1d/2d/3d           output positions * out_channels * in_channels/groups * prod(kernel)
  ConvTranspose1d/2d/3d  input positions * in_channels * out_channels/groups * prod(kernel)
  MultiheadAttention     q: L*E*E, k: S*kdim*E, v: S*vdim*E under ``in_proj_weight`` (or the separate
                         ``q/k/v_proj_weight``), ``out_proj.weight``: L*E*E, ``attention``: 2*L*S*E
Embeddings, norms, activations and pooling count 0.
"""

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _arg(args: tuple, kwargs: dict, i: int, name: str):
    return args[i] if len(args) > i else kwargs.get(name)


def _conv_macs(m: nn.Module, x: Tensor, out: Tensor) -> int:
    k = len(m.kernel_size)
    if isinstance(m, _CONV_T):  # each input position scatters its kernel into the output
        t, per_pos = x, m.in_channels * (m.out_channels // m.groups)
    else:  # each output position gathers a kernel's worth of inputs
        t, per_pos = out, m.out_channels * (m.in_channels // m.groups)
    batch = t.shape[0] if t.dim() == k + 2 else 1
    return batch * math.prod(t.shape[-k:]) * per_pos * math.prod(m.kernel_size)


def _mha_macs(m: nn.MultiheadAttention, prefix: str, args: tuple, kwargs: dict) -> dict[str, int]:
    q, k = _arg(args, kwargs, 0, "query"), _arg(args, kwargs, 1, "key")
    if q.dim() == 3:  # batched: [N, L, E] with batch_first, else [L, N, E]
        (n, length), source = (q.shape[:2], k.shape[1]) if m.batch_first else (q.shape[1::-1], k.shape[0])
    else:  # unbatched [L, E]
        n, length, source = 1, q.shape[0], k.shape[0]
    e = m.embed_dim
    proj = {"q": n * length * e * e, "k": n * source * m.kdim * e, "v": n * source * m.vdim * e}
    if m._qkv_same_embed_dim:
        counts = {f"{prefix}in_proj_weight": sum(proj.values())}
    else:
        counts = {f"{prefix}{p}_proj_weight": c for p, c in proj.items()}
    attended = source + (m.bias_k is not None) + bool(m.add_zero_attn)  # keys the queries attend to
    counts[f"{prefix}out_proj.weight"] = n * length * e * e
    counts[f"{prefix}attention"] = n * 2 * length * attended * e
    return counts


@contextmanager
def _mha_module_path() -> Iterator[None]:
    """Turn off PyTorch's fused transformer fast path for the count: in eval mode without grad it runs
    TransformerEncoderLayer in one kernel that never calls MultiheadAttention or its Linears as modules,
    so no hook would see them."""
    backend = getattr(torch.backends, "mha", None)
    if backend is None or not hasattr(backend, "set_fastpath_enabled"):
        with torch.enable_grad():  # older torch: grad-enabled parameters also rule the fast path out
            yield
        return
    before = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        backend.set_fastpath_enabled(before)


def _takes_ids(model: nn.Module) -> bool:
    """Whether the first leaf module (in registration order) is an embedding, so the input is token ids."""
    first = next((m for m in model.modules() if next(m.children(), None) is None), None)
    return isinstance(first, (nn.Embedding, nn.EmbeddingBag))


def layer_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32), *,
               example: Tensor | None = None) -> dict[str, int]:
    """MACs of one forward pass of one sample, per weight key (plus ``<mha>.attention``), measured with hooks.

    The model runs on ``example`` when given (one real sample, with or without its batch dimension: token ids
    arrive as the long tensor they are), else on zeros of ``input_size`` (long zeros for a model that starts
    with an embedding). The batch dimension does not enter the counts. Modes are restored afterwards.
    """
    totals: dict[str, int] = {}

    def add(key: str, n: int) -> None:
        totals[key] = totals.get(key, 0) + int(n)

    def hook(name: str):
        prefix = f"{name}." if name else ""

        def count(m: nn.Module, args: tuple, kwargs: dict, out) -> None:
            if isinstance(m, nn.MultiheadAttention):
                for key, n in _mha_macs(m, prefix, args, kwargs).items():
                    add(key, n)
            elif isinstance(m, nn.Linear):
                add(f"{prefix}weight", m.in_features * m.out_features * math.prod(out.shape[:-1]))
            else:
                add(f"{prefix}weight", _conv_macs(m, _arg(args, kwargs, 0, "input"), out))
        return count

    # MHA reads out_proj.weight functionally, but count it from the MHA hook whatever path is taken: once.
    out_projs = {id(m.out_proj) for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    counted = (nn.MultiheadAttention, nn.Linear) + _CONV + _CONV_T
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else None
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    if example is not None:
        x = example.to(device)
        if x.is_floating_point():
            x = x.to(dtype)
        if tuple(x.shape) == tuple(input_size)[1:]:  # one sample without its batch dimension
            x = x.unsqueeze(0)
        inputs = [x]
    else:
        ids = torch.zeros(input_size, device=device, dtype=torch.long)
        floats = torch.zeros(input_size, device=device, dtype=dtype)
        inputs = [ids] if _takes_ids(model) else [floats, ids]  # ids only if floats hit an embedding
    batch = inputs[0].shape[0] if inputs[0].dim() else 1

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(hook(name), with_kwargs=True) for name, m in model.named_modules()
               if isinstance(m, counted) and id(m) not in out_projs]
    model.eval()
    try:
        with _mha_module_path():
            for i, x in enumerate(inputs):
                totals.clear()
                try:
                    model(x)
                    break
                except RuntimeError as err:
                    if i + 1 == len(inputs) or "'indices'" not in str(err):
                        raise
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return {k: v // batch if v % batch == 0 else round(v / batch) for k, v in totals.items()}


def flops(model: nn.Module, densities: dict[str, float] | None = None,
          input_size: tuple[int, ...] = (1, 3, 32, 32), *, example: Tensor | None = None) -> int:
    """2 x sum of per-layer MACs, each scaled by its weight's density (1.0 if missing/None).

    Keys of ``densities`` that count no MACs are ignored; keys that are not parameters (``<mha>.attention``)
    are never scaled: pruning weights does not shrink the attention matmuls.
    """
    densities = densities or {}
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    total = 0.0
    for name, n in layer_macs(model, input_size, example=example).items():
        d = densities.get(name) if name in params else None
        total += n * (1.0 if d is None else float(d))
    return round(2 * total)
