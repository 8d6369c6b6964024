"""Cost of one pruning step of each recipe, as a multiple of one ``torch.kthvalue`` pass.

Every selection order but random reduces to "the k smallest of a score", done with ``torch.kthvalue``
plus elementwise passes (fggp/pruning/selection.py), so one kthvalue over a vector as long as all the
prunable weights is about the least an exact pruning step can cost. Dividing by it gives a ratio that says
how much the engine adds on top, and that travels between machines better than seconds do.

What is timed: ``pruner.before_step(); pruner.after_step()`` at step 1 of a schedule whose first
pruning step is step 1 (target 0.9, cubic over steps 0..10, so step 1 prunes 24% of the weights;
one-shot recipes prune 90% at their single step), with every prunable weight's ``.grad`` filled with
random values. Each repetition starts from the same dense weights and pruner state; one untimed
warm-up run comes first, and the median of ``--repeats`` runs is reported. The baseline is
``torch.kthvalue(v, n // 2)`` on n = number of prunable weights random magnitudes (the median, the
dearest k for quickselect).

    .venv/bin/python benchmarks/bench_prune.py                          # ResNet-50, CPU
    .venv/bin/python benchmarks/bench_prune.py --recipes fggp,gmp --repeats 5
    .venv/bin/python benchmarks/bench_prune.py --device cuda --json benchmarks/results/cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from fggp.models import MODELS, build_model
from fggp.pruning import RECIPES, Pruner, prunable_parameters
from fggp.train.checkpoint import atomic_write

TARGET_RECIPE, TARGET_RATIO = "fggp", 3.0


def median_seconds(run, reset, repeats: int, device: torch.device) -> float:
    """Median wall time of ``run()`` over ``repeats`` runs, each after ``reset()``, after one warm-up."""
    times = []
    for i in range(repeats + 1):
        reset()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_recipe(name: str, model: torch.nn.Module, weights: dict, repeats: int, device: torch.device) -> float:
    one_shot = RECIPES[name].schedule == "one_shot"
    pruner = Pruner(model, None, name, target_sparsity=0.9, start_step=0, end_step=1 if one_shot else 10,
                    prune_every=1)
    if pruner.pruning_steps[:1] != [1]:
        raise RuntimeError(f"{name}: step 1 is not a pruning step, so there would be nothing to time")
    initial = pruner.state_dict()

    def reset():
        with torch.no_grad():
            for n, w in weights.items():
                pruner.params[n].copy_(w)
        pruner.load_state_dict(initial)

    def step():
        pruner.before_step()
        pruner.after_step()

    return median_seconds(step, reset, repeats, device)


def run_benchmark(arch: str, device: torch.device, repeats: int, recipes: list[str]) -> dict:
    load = os.getloadavg()[0]
    torch.manual_seed(0)
    model = build_model(arch).to(device)
    params = prunable_parameters(model)
    gen = torch.Generator(device=device).manual_seed(1)
    for p in params.values():
        p.grad = torch.randn(p.shape, generator=gen, device=device)
    weights = {n: p.detach().clone() for n, p in params.items()}
    n = sum(p.numel() for p in params.values())

    v = torch.randn(n, generator=gen, device=device).abs()
    kth = median_seconds(lambda: torch.kthvalue(v, n // 2), lambda: None, repeats, device)
    results = {}
    for name in recipes:
        seconds = time_recipe(name, model, weights, repeats, device)
        results[name] = {"seconds": seconds, "ratio": seconds / kth}
    return {
        "arch": arch, "device": str(device), "prunable_weights": n, "repeats": repeats,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load_avg_1min": load,
        "kthvalue": {"seconds": kth, "k": n // 2},
        "recipes": results,
    }


def print_table(res: dict) -> None:
    print(f"one pruning step, {res['arch']} ({res['prunable_weights']:,} prunable weights), {res['device']}, "
          f"{res['threads']} threads, median of {res['repeats']}, load average {res['load_avg_1min']:.2f} at start")
    print(f"{'recipe':<20}{'seconds':>10}{'x kthvalue':>12}")
    print(f"{'kthvalue (baseline)':<20}{res['kthvalue']['seconds']:>10.3f}{1.0:>12.2f}")
    for name, r in res["recipes"].items():
        print(f"{name:<20}{r['seconds']:>10.3f}{r['ratio']:>12.2f}")
    if TARGET_RECIPE in res["recipes"]:
        ratio = res["recipes"][TARGET_RECIPE]["ratio"]
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        print(f"target: {TARGET_RECIPE} at most {TARGET_RATIO:g}x kthvalue: {ratio:.2f}x {verdict}")


def write_json(res: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write((json.dumps(res, indent=2) + "\n").encode()))


def parse_args(argv=None) -> argparse.Namespace:
    pruning = [n for n, r in RECIPES.items() if r.prunes]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50", choices=sorted(MODELS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per recipe (the median is reported)")
    parser.add_argument("--recipes", default=",".join(pruning), help="comma-separated recipe names")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in args.recipes if r not in pruning] or ([] if args.recipes else [""])
    if unknown:
        parser.error(f"--recipes: {unknown[0]!r} is not one of {', '.join(pruning)}")
    if args.repeats < 1:
        parser.error(f"--repeats: {args.repeats} must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device: cuda was asked for but torch sees no CUDA device")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    res = run_benchmark(args.arch, torch.device(args.device), args.repeats, args.recipes)
    print_table(res)
    if args.json:
        write_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
