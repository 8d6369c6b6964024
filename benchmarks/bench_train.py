"""Training throughput on one device: the reference data pipeline vs fggp's, dense vs masked, and pruning cost.

Why: a 160-epoch CIFAR-10 run should take minutes, not hours, so that the paper's grid of runs fits on
one GPU. This script measures where the time goes, in one process on one device, at batch 128, on
CIFAR-shaped synthetic uint8 images (their content does not change the amount of work):

1. ``reference``: the pipeline GraNet-style code runs today. A ``torch.utils.data.DataLoader`` over a
   Dataset that turns each uint8 HWC array into a PIL image (as ``torchvision.datasets.CIFAR10``
   does) and applies ``RandomCrop(32, padding=4, padding_mode="reflect")``, ``RandomHorizontalFlip``,
   ``ToTensor`` and ``Normalize`` in ``--workers`` worker processes, shuffled, pinned on CUDA; an fp32
   NCHW model; SGD (momentum 0.9, Nesterov, weight decay 5e-4).
2. ``fggp``: the loop of ``fggp.train.run._Trainer._train_epoch``: ``DeviceLoader`` (uint8 data on
   the device, one batched gather for crop and flip), bf16 autocast and a channels_last model on
   CUDA, ``torch.compile`` with ``--compile``, the same SGD, with no Pruner.
3. ``fggp_masked``: the same with a ``Pruner`` whose masks are 90% sparse from the start (ERK,
   ``initial_sparsity == target_sparsity``, so it never prunes) and whose ``before_step()`` and
   ``after_step()`` run every step: the steady-state cost of training under masks.
4. One pruning step of ``fggp``, ``gmp`` and ``granet``: ``before_step(); after_step()`` at the first
   pruning step of the GraNet-recipe schedule (target 0.9, every 1000 steps over epochs 0..80), with
   ``.grad`` filled and momentum buffers present; one untimed warm-up, then the median of
   ``--prune-repeats``.

Timing: ``--warmup`` steps (torch.compile's compilation happens there; their time is reported as
``warmup_seconds``), then ``--steps`` timed steps, data loading included, with
``torch.cuda.synchronize()`` on CUDA before and after. An epoch's time is extrapolated as
steps_per_epoch x seconds/step, with steps_per_epoch = ceil(images / batch size) (391 at the
defaults), so per-epoch set-up (worker start-up, the epoch's permutation) is left out.

Ratios: ``speedup_vs_reference`` = fggp / reference images/s; ``masked_over_dense`` = fggp_masked /
fggp images/s; ``prune_fraction_of_run`` = pruning steps in a 160-epoch run x one step's seconds /
(160 x one fggp epoch); ``projected_run_minutes`` = 160 fggp_masked epochs (a pruning run trains with
its Pruner hooks on every step) plus all pruning steps of the ``fggp`` recipe. Evaluation, checkpoint
writes and compilation are not in the projection. Targets are printed with PASS/MISS, never raised.

    .venv/bin/python benchmarks/bench_train.py                           # GPU machine: vgg19,resnet50
    .venv/bin/python benchmarks/bench_train.py --device cpu --arch tiny --images 512 --batch-size 64 \\
        --workers 0 --warmup 1 --steps 2                                 # CPU smoke run
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import statistics
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from fggp.data import DeviceLoader, Split
from fggp.models import MODELS, build_model
from fggp.pruning import Pruner, SparsitySchedule
from fggp.train.checkpoint import atomic_write
from fggp.train.run import DIVERGENCE_CHECK_EVERY

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4
RUN_EPOCHS, PRUNE_END_EPOCH, PRUNE_EVERY, TARGET_SPARSITY = 160, 80, 1000, 0.9
MASK_RECIPE = "gmp"
PRUNE_RECIPES = ("fggp", "gmp", "granet")
PIPELINES = ("reference", "fggp", "fggp_masked")

TARGET_DEVICES = ("H100", "H200")
SPEEDUP_TARGETS = {"vgg19": 5.0, "resnet50": 3.0}
MASKED_TARGET = 0.95
PRUNE_FRACTION_TARGET = 0.01
RUN_MINUTES_TARGETS = {"vgg19": 10.0}


# ---------------------------------------------------------------------------------------- data
def synthetic_split(n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return Split(images, torch.randint(0, 10, (n,), generator=g))


class PILImages(torch.utils.data.Dataset):
    """uint8 HWC arrays made into PIL images one at a time, as ``torchvision.datasets.CIFAR10`` does."""

    def __init__(self, split: Split, transform) -> None:
        self.data = split.images.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = split.labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def reference_loader(split: Split, batch_size: int, workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    return torch.utils.data.DataLoader(PILImages(split, transform), batch_size=batch_size, shuffle=True,
                                       num_workers=workers, pin_memory=device.type == "cuda")


def endless(epochs):
    """One batch after another across epochs: ``epochs(e)`` is the iterator of epoch ``e``."""
    for epoch in itertools.count():
        yield from epochs(epoch)


# -------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, batches, warmup: int, steps: int, device: torch.device) -> dict:
    """Seconds per step over ``steps`` timed steps (fetching the batch included), after ``warmup``."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(warmup):
        step(next(batches))
    synchronize(device)
    timed = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    synchronize(device)
    end = time.perf_counter()
    return {"seconds_per_step": (end - timed) / steps, "warmup_seconds": timed - start}


def make_sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY)


def new_model(arch: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def measure_reference(arch: str, split: Split, args, device: torch.device) -> dict:
    model = new_model(arch, device, channels_last=False).train()
    optimizer = make_sgd(model)
    loader = reference_loader(split, args.batch_size, args.workers, device)

    def step(batch):
        x, y = batch[0].to(device), batch[1].to(device)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    batches = endless(lambda epoch: iter(loader))
    try:
        return time_steps(step, batches, args.warmup, args.steps, device)
    finally:
        batches.close()


def measure_fggp(arch: str, split: Split, args, device: torch.device, masked: bool) -> dict:
    """The step of ``_Trainer._train_epoch``: autocast forward, backward, Pruner hooks, SGD, on-device stats."""
    cuda = device.type == "cuda"
    model = new_model(arch, device, channels_last=cuda).train()
    optimizer = make_sgd(model)
    loader = DeviceLoader(split, args.batch_size, train=True, mean=MEAN, std=STD, device=device, seed=0)
    pruner = None
    if masked:
        steps_per_epoch = len(loader)
        pruner = Pruner(model, optimizer, MASK_RECIPE, target_sparsity=TARGET_SPARSITY,
                        initial_sparsity=TARGET_SPARSITY, end_step=PRUNE_END_EPOCH * steps_per_epoch,
                        prune_every=PRUNE_EVERY, total_steps=RUN_EPOCHS * steps_per_epoch)
    forward = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    pending = []

    def step(batch):
        nonlocal loss_sum, correct
        x, y = batch
        with autocast:
            logits = forward(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if pruner is not None:
            pruner.before_step()
        optimizer.step()
        if pruner is not None:
            pruner.after_step()
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.argmax(1) == y).sum()
        pending.append(loss.detach())
        if len(pending) >= DIVERGENCE_CHECK_EVERY:
            torch.isfinite(torch.stack(pending).float()).all().item()
            pending.clear()

    result = time_steps(step, endless(loader.iter_epoch), args.warmup, args.steps, device)
    if pruner is not None:
        result["sparsity"] = pruner.sparsity
    if args.compile:
        torch._dynamo.reset()
    return result


def run_schedule(steps_per_epoch: int) -> SparsitySchedule:
    """When a 160-epoch GraNet-recipe run prunes: every 1000 steps over epochs 0..80, and at the end."""
    return SparsitySchedule(initial=0.0, final=TARGET_SPARSITY, start=0, end=PRUNE_END_EPOCH * steps_per_epoch,
                            every=PRUNE_EVERY)


def time_pruning_step(arch: str, recipe: str, steps_per_epoch: int, repeats: int, device: torch.device) -> float:
    """Median seconds of ``before_step(); after_step()`` at the run's first pruning step."""
    model = new_model(arch, device, channels_last=device.type == "cuda")
    optimizer = make_sgd(model)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    pruner = Pruner(model, optimizer, recipe, target_sparsity=TARGET_SPARSITY,
                    end_step=PRUNE_END_EPOCH * steps_per_epoch, prune_every=PRUNE_EVERY,
                    total_steps=RUN_EPOCHS * steps_per_epoch)
    pruner.step = pruner.pruning_steps[0] - 1
    initial = pruner.state_dict()
    weights = {n: p.detach().clone() for n, p in pruner.params.items()}
    times = []
    for i in range(repeats + 1):
        with torch.no_grad():
            for n, w in weights.items():
                pruner.params[n].copy_(w)
        pruner.load_state_dict(initial)
        synchronize(device)
        start = time.perf_counter()
        pruner.before_step()
        pruner.after_step()
        synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------ one arch
def run_arch(arch: str, split: Split, args, device: torch.device, log=print) -> dict:
    steps_per_epoch = math.ceil(len(split) / args.batch_size)
    pipelines = {}
    for name in PIPELINES:
        log(f"{arch}: timing {name} ...")
        if name == "reference":
            pipelines[name] = measure_reference(arch, split, args, device)
        else:
            pipelines[name] = measure_fggp(arch, split, args, device, masked=name == "fggp_masked")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    prune = {}
    for recipe in PRUNE_RECIPES:
        log(f"{arch}: timing one {recipe} pruning step ...")
        prune[recipe] = time_pruning_step(arch, recipe, steps_per_epoch, args.prune_repeats, device)
    return {"steps_per_epoch": steps_per_epoch, "pipelines": pipelines, "prune_step_seconds": prune}


def summarize(runs: dict, args, device: torch.device, load_avg: float) -> dict:
    """The JSON document: raw timings per arch, then the ratios and the projection."""
    images_per_second, epoch_seconds, warmup_seconds = {}, {}, {}
    speedup, masked, fraction, minutes, prune_seconds = {}, {}, {}, {}, {}
    pruning_steps = {}
    for arch, run in runs.items():
        spe, pipes = run["steps_per_epoch"], run["pipelines"]
        images_per_second[arch] = {n: args.batch_size / p["seconds_per_step"] for n, p in pipes.items()}
        epoch_seconds[arch] = {n: spe * p["seconds_per_step"] for n, p in pipes.items()}
        warmup_seconds[arch] = {n: p["warmup_seconds"] for n, p in pipes.items()}
        ips, epoch = images_per_second[arch], epoch_seconds[arch]
        speedup[arch] = ips["fggp"] / ips["reference"]
        masked[arch] = ips["fggp_masked"] / ips["fggp"]
        count = len(run_schedule(spe).pruning_steps())
        pruning_steps[arch] = count
        prune_seconds[arch] = run["prune_step_seconds"]
        fraction[arch] = {r: count * s / (RUN_EPOCHS * epoch["fggp"]) for r, s in prune_seconds[arch].items()}
        minutes[arch] = (RUN_EPOCHS * epoch["fggp_masked"] + count * prune_seconds[arch]["fggp"]) / 60
    name = device_name(device)
    result = {
        "device": name,
        "device_slug": slug(name) if device.type == "cuda" else "cpu",
        "date": datetime.now(timezone.utc).date().isoformat(),
        "torch": torch.__version__,
        "settings": {
            "arch": list(runs), "images": args.images, "batch_size": args.batch_size, "workers": args.workers,
            "warmup": args.warmup, "steps": args.steps, "compile": args.compile, "prune_repeats": args.prune_repeats,
            "autocast": "bf16" if device.type == "cuda" else "none (fp32)",
            "channels_last_model": device.type == "cuda", "threads": torch.get_num_threads(),
            "load_avg_1min_at_start": load_avg, "mask_recipe": MASK_RECIPE, "mask_sparsity": TARGET_SPARSITY,
            "run_epochs": RUN_EPOCHS, "prune_end_epoch": PRUNE_END_EPOCH, "prune_every": PRUNE_EVERY,
            "steps_per_epoch": {a: r["steps_per_epoch"] for a, r in runs.items()},
            "pruning_steps_per_run": pruning_steps,
            "epoch_seconds_method": "steps_per_epoch x seconds per timed step",
        },
        "images_per_second": images_per_second,
        "epoch_seconds": epoch_seconds,
        "warmup_seconds": warmup_seconds,
        "mask_sparsity_measured": {a: r["pipelines"]["fggp_masked"]["sparsity"] for a, r in runs.items()},
        "prune_step_seconds": prune_seconds,
        "speedup_vs_reference": speedup,
        "masked_over_dense": masked,
        "prune_fraction_of_run": fraction,
        "projected_run_minutes": minutes,
    }
    result["targets"] = check_targets(result)
    return result


# ------------------------------------------------------------------------------------- targets
def check_targets(res: dict) -> list[dict]:
    rows = []

    def add(target: str, value: float, ok: bool) -> None:
        rows.append({"target": target, "value": value, "verdict": "PASS" if ok else "MISS"})

    for arch, value in res["speedup_vs_reference"].items():
        if arch in SPEEDUP_TARGETS:
            add(f"{arch} speedup_vs_reference >= {SPEEDUP_TARGETS[arch]:g}x", value, value >= SPEEDUP_TARGETS[arch])
    for arch, value in res["masked_over_dense"].items():
        add(f"{arch} masked_over_dense >= {MASKED_TARGET:g}", value, value >= MASKED_TARGET)
    for arch, recipes in res["prune_fraction_of_run"].items():
        for recipe, value in recipes.items():
            add(f"{arch} {recipe} prune_fraction_of_run <= {PRUNE_FRACTION_TARGET:.0%}", value,
                value <= PRUNE_FRACTION_TARGET)
    for arch, value in res["projected_run_minutes"].items():
        if arch in RUN_MINUTES_TARGETS:
            add(f"{arch} projected_run_minutes < {RUN_MINUTES_TARGETS[arch]:g}", value, value < RUN_MINUTES_TARGETS[arch])
    return rows


def on_target_device(res: dict) -> bool:
    return any(d in res["device"] for d in TARGET_DEVICES)


# ------------------------------------------------------------------------------------- reports
def percent(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def print_report(res: dict) -> None:
    s = res["settings"]
    print(f"\n{res['device']}, torch {res['torch']}, {res['date']}: batch {s['batch_size']}, {s['images']} images, "
          f"{s['workers']} workers, {s['warmup']} warm-up + {s['steps']} timed steps, compile {s['compile']}, "
          f"autocast {s['autocast']}, {s['threads']} threads, load average {s['load_avg_1min_at_start']:.2f} at start")
    print(f"epoch = steps_per_epoch x seconds/step (extrapolated from {s['steps']} steps)\n")
    print(f"{'arch':<10}{'pipeline':<14}{'images/s':>12}{'s/epoch':>10}{'warm-up s':>11}")
    for arch in res["images_per_second"]:
        for name in PIPELINES:
            print(f"{arch:<10}{name:<14}{res['images_per_second'][arch][name]:>12.1f}"
                  f"{res['epoch_seconds'][arch][name]:>10.2f}{res['warmup_seconds'][arch][name]:>11.2f}")
    print(f"\n{'arch':<10}{'speedup':>9}{'masked/dense':>14}{'run min':>9}   prune step s (fraction of run)")
    for arch in res["images_per_second"]:
        prune = "  ".join(f"{r} {res['prune_step_seconds'][arch][r]:.4f} ({percent(res['prune_fraction_of_run'][arch][r])})"
                          for r in PRUNE_RECIPES)
        print(f"{arch:<10}{res['speedup_vs_reference'][arch]:>8.2f}x{res['masked_over_dense'][arch]:>14.3f}"
              f"{res['projected_run_minutes'][arch]:>9.2f}   {prune}")
    print(f"\ntargets (set for {' / '.join(TARGET_DEVICES)} with vgg19 and resnet50; "
          f"{'this is one' if on_target_device(res) else 'indicative only on this device'}):")
    for row in res["targets"]:
        print(f"  {row['verdict']}  {row['target']}: {row['value']:.4g}")


SECTION = "<!-- bench_train:{slug} -->\n{body}\n<!-- /bench_train:{slug} -->"


def markdown_section(res: dict) -> str:
    s = res["settings"]
    lines = [f"### {res['device']}", ""]
    if not on_target_device(res):
        lines += [f"Not an {' / '.join(TARGET_DEVICES)}: these numbers are not comparable with the targets.", ""]
    lines += [
        f"Measured {res['date']}, torch {res['torch']}: batch {s['batch_size']}, {s['images']} synthetic images, "
        f"{s['workers']} loader workers, {s['warmup']} warm-up + {s['steps']} timed steps, compile {s['compile']}, "
        f"autocast {s['autocast']}, {s['threads']} threads (load average {s['load_avg_1min_at_start']:.2f} at start). "
        f"Epoch seconds = steps per epoch x seconds per timed step.",
        "",
        "| arch | reference img/s | fggp img/s | fggp masked img/s | speedup vs reference | masked / dense "
        "| fggp s/epoch | projected 160-epoch run (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, ips in res["images_per_second"].items():
        lines.append(f"| {arch} | {ips['reference']:.1f} | {ips['fggp']:.1f} | {ips['fggp_masked']:.1f} "
                     f"| {res['speedup_vs_reference'][arch]:.2f}x | {res['masked_over_dense'][arch]:.3f} "
                     f"| {res['epoch_seconds'][arch]['fggp']:.2f} | {res['projected_run_minutes'][arch]:.2f} |")
    lines += ["", "| arch | recipe | one pruning step (s) | pruning steps per run | fraction of run |",
              "|---|---|---:|---:|---:|"]
    for arch, recipes in res["prune_step_seconds"].items():
        for recipe, seconds in recipes.items():
            lines.append(f"| {arch} | {recipe} | {seconds:.4f} | {s['pruning_steps_per_run'][arch]} "
                         f"| {percent(res['prune_fraction_of_run'][arch][recipe])} |")
    lines += ["", "Targets:", ""]
    lines += [f"- {row['verdict']}: {row['target']} ({row['value']:.4g})" for row in res["targets"]]
    return SECTION.format(slug=res["device_slug"], body="\n".join(lines))


def update_markdown(path: Path, res: dict) -> None:
    """Replace this device's section of ``path`` (between its markers), or append one."""
    section = markdown_section(res)
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(SECTION.format(slug=re.escape(res["device_slug"]), body=r".*?"), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section + "\n"
    write_atomic(path, text)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ----------------------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    parser.add_argument("--arch", default="vgg19,resnet50", help="comma-separated architectures")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=50000, help="synthetic training images (CIFAR-10 has 50000)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference pipeline")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per pipeline")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the fggp pipelines (default: on for CUDA, off for CPU)")
    parser.add_argument("--prune-repeats", type=int, default=3, help="timed pruning steps per recipe (median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"),
                        help="the JSON goes to OUT_DIR/<device-slug>.json")
    parser.add_argument("--markdown", type=Path, help="write or update this device's section of this Markdown file")
    args = parser.parse_args(argv)

    args.arch = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in args.arch if a not in MODELS] or ([] if args.arch else [""])
    if unknown:
        parser.error(f"--arch: {unknown[0]!r} is not one of {', '.join(sorted(MODELS))}")
    for name, low in (("batch_size", 1), ("images", 1), ("steps", 1), ("prune_repeats", 1), ("workers", 0),
                      ("warmup", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')}: {getattr(args, name)} must be >= {low}")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as e:
        parser.error(f"--device: {e}")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device: {args.device} is neither cpu nor cuda")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device: cuda was asked for but torch sees no CUDA device")
    if args.compile is None:
        args.compile = args.device.type == "cuda"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = args.device
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    load_avg = os.getloadavg()[0]
    split = synthetic_split(args.images, args.seed)
    runs = {arch: run_arch(arch, split, args, device) for arch in args.arch}
    res = summarize(runs, args, device, load_avg)
    print_report(res)
    path = args.out_dir / f"{res['device_slug']}.json"
    write_atomic(path, json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {path}")
    if args.markdown:
        update_markdown(args.markdown, res)
        print(f"updated {args.markdown}")
    return res


if __name__ == "__main__":
    main()
