"""Per-layer multiply-accumulate counts and (sparse) FLOPs of Conv2d/Linear layers.

Counts are keyed by the weight's parameter name (as in `model.named_parameters()`), the
same keys the pruning engine uses for masks and densities, so a sparse model's FLOPs are
just each layer's MACs scaled by the density of its weight.
"""

import torch
from torch import nn


def layer_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """MACs of one forward pass of one sample, per Conv2d/Linear, measured with hooks.

    The batch dimension of `input_size` does not enter the counts. A module called
    several times in one forward pass is counted once per call.
    """
    macs: dict[str, int] = {}

    def hook(name: str):
        def count(m: nn.Module, inputs, out: torch.Tensor) -> None:
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                per_pos = m.out_channels * (m.in_channels // m.groups) * kh * kw
                n = out.shape[-2] * out.shape[-1] * per_pos
            else:
                n = m.in_features * m.out_features
            macs[name] = macs.get(name, 0) + n
        return count

    modes = {m: m.training for m in model.modules()}
    handles = [m.register_forward_hook(hook(f"{name}.weight" if name else "weight"))
               for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    param = next(model.parameters(), None)
    x = torch.zeros(input_size, device=param.device if param is not None else None,
                    dtype=param.dtype if param is not None else None)
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return macs


def flops(model: nn.Module, densities: dict[str, float] | None = None,
          input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """2 x sum of per-layer MACs, each scaled by its weight's density (1.0 if missing/None).

    Keys of `densities` that are not Conv2d/Linear weights are ignored.
    """
    densities = densities or {}
    total = 0.0
    for name, n in layer_macs(model, input_size).items():
        d = densities.get(name)
        total += n * (1.0 if d is None else float(d))
    return round(2 * total)
