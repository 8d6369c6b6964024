"""What pruning buys at inference on this CPU: file size and latency, dense against sparse, measured.

For LeNet-300-100 (1x28x28) at several sparsities, and one convolutional model, every prunable weight gets
a per-layer magnitude mask at that sparsity (the same sparsity in every layer; the weights are the fresh
initialization, so the kept pattern is as scattered as a random one). Then, with ``fggp.export`` and
``fggp.sparse`` (the code an export runs):

- bytes of the dense state_dict (``torch.save``) and of ``model.sparse.safetensors`` (``save_sparse``);
- the FLOP ratio dense / sparse (``fggp.models.flops``), what the sparsity promises;
- the median latency of the dense model and of ``sparse_model`` (masked Linear layers through torch.sparse
  CSR matmuls, convolutions dense: there is no sparse convolution kernel on CPU), per batch size, dense and
  sparse alternating repeat by repeat (``measure_latency``), what the sparsity delivers.

    .venv/bin/python benchmarks/bench_export.py                       # writes benchmarks/results/export_cpu.json
    .venv/bin/python benchmarks/bench_export.py --repeats 5 --sparsities 0.9 --conv-arch tiny --out /tmp/e.json

The machine's load average is recorded before and after: on a shared machine latencies move a lot.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from fggp.export import measure_latency, sparse_model
from fggp.models import build_model, flops
from fggp.pruning import prunable_parameters
from fggp.sparse import dense_bytes, save_sparse
from fggp.train.checkpoint import write_json

LENET_SHAPE = (1, 28, 28)
CONV_SHAPE = (3, 32, 32)


def magnitude_masks(model: torch.nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Per prunable weight, keep its largest |w| (at least one) so that ``sparsity`` of it is zero; apply it."""
    masks = {}
    with torch.no_grad():
        for name, p in prunable_parameters(model).items():
            keep = max(1, round(p.numel() * (1 - sparsity)))
            top = p.abs().flatten().topk(keep).indices
            mask = torch.zeros(p.numel(), dtype=torch.bool)
            mask[top] = True
            masks[name] = mask.view_as(p)
            p.mul_(masks[name])
    return masks


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(arch: str, shape, sparsity: float, batch_sizes, repeats: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, input_shape=shape).eval()
    masks = magnitude_masks(model, sparsity)
    state = model.state_dict()
    sparse_file = workdir / f"{arch}-{sparsity}.sparse.safetensors"
    densities = {n: float(m.float().mean()) for n, m in masks.items()}
    dense_flops = flops(model, input_size=(1, *shape))
    sparse_flops = flops(model, densities, input_size=(1, *shape))
    fast = sparse_model(model, masks)
    started = time.perf_counter()
    latency = measure_latency(model, fast, shape, batch_sizes, repeats)
    row = {
        "arch": arch, "input_shape": list(shape), "sparsity": sparsity,
        "kept": int(sum(int(m.sum()) for m in masks.values())), "prunable": int(sum(m.numel() for m in masks.values())),
        "dense_state_dict_bytes": dense_bytes(state),
        "sparse_file_bytes": save_sparse(state, masks, sparse_file, {"arch": arch, "input_shape": list(shape)}),
        "dense_flops": dense_flops, "sparse_flops": sparse_flops, "flop_ratio": dense_flops / sparse_flops,
        "kernels": fast.kernels, "latency": latency["batch_sizes"],
        "load_average": [latency["load_average_before"][0], latency["load_average_after"][0]],
        "seconds": time.perf_counter() - started,
    }
    row["size_ratio"] = row["sparse_file_bytes"] / row["dense_state_dict_bytes"]
    return row


def table(rows: list[dict]) -> str:
    batches = sorted({int(b) for r in rows for b in r["latency"]})
    head = ("| model | threads | sparsity | dense state_dict | sparse file | size | FLOP ratio | "
            + " | ".join(f"batch {b}: dense / CSR ms (speedup)" for b in batches) + " |")
    lines = [head, "|---|---:|---:|" + "---:|" * (4 + len(batches))]
    for r in rows:
        cells = []
        for b in batches:
            x = r["latency"].get(str(b))
            cells.append(f"{x['dense_ms']:.3f} / {x['sparse_ms']:.3f} (x{x['speedup']:.2f})" if x else "-")
        lines.append(f"| {r['arch']} | {r['threads']} | {r['sparsity']:.1%} | {r['dense_state_dict_bytes'] / 1e3:,.0f} KB | "
                     f"{r['sparse_file_bytes'] / 1e3:,.1f} KB | {r['size_ratio']:.3f}x | x{r['flop_ratio']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sparsities", type=_floats, default=[0.9, 0.95, 0.98, 0.998])
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 64, 256])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--conv-arch", default="resnet20", help="a convolutional model of fggp.models ('' for none)")
    parser.add_argument("--conv-sparsities", type=_floats, default=[0.9, 0.98])
    parser.add_argument("--conv-batch-sizes", type=_ints, default=[1, 64])
    parser.add_argument("--conv-repeats", type=int, default=10)
    parser.add_argument("--threads", type=_ints, default=None,
                        help="thread counts to measure with, e.g. 1,2 (default: torch's own)")
    parser.add_argument("--out", default="benchmarks/results/export_cpu.json")
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    load_before = os.getloadavg()
    print(f"bench_export: torch {torch.__version__}, {default_threads} threads by default, {cpu_name()}, "
          f"load average {load_before[0]:.2f}", flush=True)
    points = [("lenet300_100", LENET_SHAPE, s, args.batch_sizes, args.repeats) for s in args.sparsities]
    if args.conv_arch:
        points += [(args.conv_arch, CONV_SHAPE, s, args.conv_batch_sizes, args.conv_repeats)
                   for s in args.conv_sparsities]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in args.threads or [torch.get_num_threads()]:
            torch.set_num_threads(threads)
            for arch, shape, sparsity, batch_sizes, repeats in points:
                rows.append({"threads": threads, **measure(arch, shape, sparsity, batch_sizes, repeats, Path(tmp))})
                print(f"  {arch} at {sparsity:.1%}, {threads} thread(s): done ({rows[-1]['seconds']:.1f}s, "
                      f"load average {rows[-1]['load_average'][1]:.2f})", flush=True)
        torch.set_num_threads(default_threads)
    load_after = os.getloadavg()
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
        "python": sys.version.split()[0], "threads": sorted({r["threads"] for r in rows}),
        "default_threads": default_threads, "cpu": cpu_name(),
        "cores": os.cpu_count(), "load_average_before": list(load_before), "load_average_after": list(load_after),
        "masks": "per-layer magnitude masks on freshly initialized weights, the same sparsity in every prunable "
                 "layer (at least one weight kept per layer)",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": rows,
    }
    print(table(rows))
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, report)
        print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
