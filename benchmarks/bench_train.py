"""Training throughput on one device: the reference data pipeline vs fggp's, dense vs masked, and pruning cost.

Why: a 160-epoch CIFAR-10 run should take minutes, not hours, so that the paper's grid of runs fits on
one GPU. This script measures where the time goes, in one process on one device, at batch 128, on
CIFAR-shaped synthetic uint8 images (their content does not change the amount of work):

1. ``reference``: the pipeline GraNet-style code runs today. A ``torch.utils.data.DataLoader`` over a
   Dataset that turns each uint8 HWC array into a PIL image (as ``torchvision.datasets.CIFAR10``
   does) and applies ``RandomCrop(32, padding=4, padding_mode="reflect")``, ``RandomHorizontalFlip``,
   ``ToTensor`` and ``Normalize`` in ``--workers`` worker processes, shuffled, pinned on CUDA; an fp32
   NCHW model; SGD (momentum 0.9, Nesterov, weight decay 5e-4). ``--warmup`` untimed steps, then
   ``--steps`` timed ones; its epoch is extrapolated as steps_per_epoch x seconds/step (worker start-up
   left out, in its favour).
2. ``fggp``: the run's own trainer, ``fggp.train.run._Trainer`` with the ``dense`` recipe, timed over
   whole epochs of ``_train_epoch``: ``DeviceLoader`` (uint8 data on the device, one batched gather for
   crop and flip), bf16 autocast and channels_last on CUDA, ``torch.compile`` with ``--compile``. One
   warm-up epoch (compilation happens there: ``warmup_seconds``), then ``--epochs`` timed epochs.
3. ``fggp_masked``: the same with the ``gmp`` recipe whose ERK masks are 90% sparse from the start
   (``initial_sparsity == target_sparsity``, so it never prunes) and whose ``before_step()`` and
   ``after_step()`` run every step: the steady-state cost of training under masks. Its ``evaluate()``
   over ``--test-images`` and one epoch-end checkpoint write are timed too.
4. One pruning step of ``fggp``, ``gmp`` and ``granet``: ``before_step(); after_step()`` at the first
   pruning step of the GraNet-recipe schedule (target 0.9, every 1000 steps over epochs 0..80), with
   ``.grad`` filled and momentum buffers present; one untimed warm-up, then the median of
   ``--prune-repeats``.

``torch.cuda.synchronize()`` brackets every timing on CUDA; cuDNN's benchmark mode is on for both
pipelines on CUDA, as the trainer sets it.

Ratios: ``speedup_vs_reference`` = fggp / reference images/s; ``masked_over_dense`` = fggp_masked /
fggp images/s; ``prune_fraction_of_run`` = pruning steps in a 160-epoch run x one step's seconds /
(160 x one fggp epoch); ``projected_run_minutes`` = compilation (warm-up epoch minus a timed one) + 160 x
(fggp_masked epoch + evaluation + checkpoint write) + all pruning steps of the ``fggp`` recipe: a whole
run but for start-up. Targets are printed with PASS/MISS, never raised.

    python benchmarks/bench_train.py                                     # GPU machine: vgg19,resnet50
    python benchmarks/bench_train.py --device cpu --arch tiny --images 512 --test-images 256 \\
        --batch-size 64 --workers 0 --warmup 1 --steps 2                # CPU smoke run
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
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from fggp.data import Dataset, Split
from fggp.models import MODELS, build_model
from fggp.pruning import Pruner, SparsitySchedule
from fggp.train import RunConfig
from fggp.train.checkpoint import atomic_write, save_checkpoint
from fggp.train.run import _Trainer

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
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as fggp's trainer sets it: no edge from it
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


def trainer_config(arch: str, args, device: torch.device, masked: bool) -> RunConfig:
    """The GraNet recipe as a RunConfig; masked: ERK masks 90% sparse from the start that never prune."""
    sparsity = TARGET_SPARSITY if masked else 0.0
    return RunConfig(arch=arch, dataset="synthetic", recipe=MASK_RECIPE if masked else "dense",
                     target_sparsity=sparsity, initial_sparsity=sparsity, epochs=RUN_EPOCHS,
                     batch_size=args.batch_size, prune_end_epoch=PRUNE_END_EPOCH, prune_every=PRUNE_EVERY,
                     compile=args.compile, progress=False, device=str(device))


def measure_fggp(arch: str, split: Split, test: Split, args, device: torch.device, masked: bool) -> dict:
    """Whole epochs of the run's own ``_Trainer``: one to warm up (compilation), then ``--epochs`` timed.

    Also timed: one ``evaluate()`` over the test split and one epoch-end checkpoint write, the other
    per-epoch costs of a run.
    """
    data = Dataset("synthetic", train=split, test=test, num_classes=10, mean=MEAN, std=STD)
    trainer = _Trainer(trainer_config(arch, args, device, masked), data, device, log=lambda message: None)
    synchronize(device)
    start = time.perf_counter()
    trainer._train_epoch(0)
    warm = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        trainer._train_epoch(epoch)
    synchronize(device)
    timed = time.perf_counter()
    trainer.evaluate()  # the eval graph compiles here
    synchronize(device)
    eval_start = time.perf_counter()
    trainer.evaluate()
    eval_end = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), trainer._state())
        checkpoint_seconds = time.perf_counter() - eval_end
    epoch_seconds = (timed - warm) / args.epochs
    result = {"seconds_per_step": epoch_seconds / trainer.steps_per_epoch, "epoch_seconds": epoch_seconds,
              "warmup_seconds": warm - start, "eval_seconds": eval_end - eval_start,
              "checkpoint_seconds": checkpoint_seconds, "runtime": trainer.runtime}
    if masked:
        result["sparsity"] = trainer.pruner.sparsity
    del trainer
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
def run_arch(arch: str, split: Split, test: Split, args, device: torch.device, log=print) -> dict:
    steps_per_epoch = math.ceil(len(split) / args.batch_size)
    pipelines = {}
    for name in PIPELINES:
        log(f"{arch}: timing {name} ...")
        if name == "reference":
            pipelines[name] = measure_reference(arch, split, args, device)
            pipelines[name]["epoch_seconds"] = steps_per_epoch * pipelines[name]["seconds_per_step"]
        else:
            pipelines[name] = measure_fggp(arch, split, test, args, device, masked=name == "fggp_masked")
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
    pruning_steps, per_epoch_extra, runtime = {}, {}, {}
    for arch, run in runs.items():
        spe, pipes = run["steps_per_epoch"], run["pipelines"]
        ref = pipes["reference"]
        images_per_second[arch] = {"reference": args.batch_size / ref["seconds_per_step"],
                                   **{n: args.images / pipes[n]["epoch_seconds"] for n in PIPELINES[1:]}}
        epoch_seconds[arch] = {n: p["epoch_seconds"] for n, p in pipes.items()}
        warmup_seconds[arch] = {n: p["warmup_seconds"] for n, p in pipes.items()}
        ips, epoch = images_per_second[arch], epoch_seconds[arch]
        speedup[arch] = ips["fggp"] / ips["reference"]
        masked[arch] = ips["fggp_masked"] / ips["fggp"]
        count = len(run_schedule(spe).pruning_steps())
        pruning_steps[arch] = count
        prune_seconds[arch] = run["prune_step_seconds"]
        fraction[arch] = {r: count * s / (RUN_EPOCHS * epoch["fggp"]) for r, s in prune_seconds[arch].items()}
        run_pipe = pipes["fggp_masked"]
        per_epoch_extra[arch] = {"eval_seconds": run_pipe["eval_seconds"],
                                 "checkpoint_seconds": run_pipe["checkpoint_seconds"]}
        compile_seconds = max(0.0, run_pipe["warmup_seconds"] - run_pipe["epoch_seconds"])
        minutes[arch] = (compile_seconds
                         + RUN_EPOCHS * (run_pipe["epoch_seconds"] + run_pipe["eval_seconds"]
                                         + run_pipe["checkpoint_seconds"])
                         + count * prune_seconds[arch]["fggp"]) / 60
        runtime[arch] = run_pipe["runtime"]
    name = device_name(device)
    result = {
        "device": name,
        "device_slug": device_slug(device),
        "date": datetime.now(timezone.utc).date().isoformat(),
        "torch": torch.__version__,
        "settings": {
            "arch": list(runs), "images": args.images, "batch_size": args.batch_size, "workers": args.workers,
            "warmup": args.warmup, "steps": args.steps, "epochs": args.epochs, "test_images": args.test_images,
            "compile": args.compile, "prune_repeats": args.prune_repeats,
            "autocast": "bf16" if device.type == "cuda" else "none (fp32)",
            "channels_last_model": device.type == "cuda", "trainer_runtime": runtime,
            "cudnn_benchmark": device.type == "cuda", "threads": torch.get_num_threads(),
            "load_avg_1min_at_start": load_avg, "mask_recipe": MASK_RECIPE, "mask_sparsity": TARGET_SPARSITY,
            "run_epochs": RUN_EPOCHS, "prune_end_epoch": PRUNE_END_EPOCH, "prune_every": PRUNE_EVERY,
            "steps_per_epoch": {a: r["steps_per_epoch"] for a, r in runs.items()},
            "pruning_steps_per_run": pruning_steps,
            "epoch_seconds_method": {"reference": "steps_per_epoch x seconds per timed step",
                                     "fggp": "whole epochs of fggp.train.run._Trainer, after one warm-up epoch"},
        },
        "images_per_second": images_per_second,
        "epoch_seconds": epoch_seconds,
        "warmup_seconds": warmup_seconds,
        "per_epoch_extra_seconds": per_epoch_extra,
        "mask_sparsity_measured": {a: r["pipelines"]["fggp_masked"]["sparsity"] for a, r in runs.items()},
        "prune_step_seconds": prune_seconds,
        "speedup_vs_reference": speedup,
        "masked_over_dense": masked,
        "prune_fraction_of_run": fraction,
        "projected_run_minutes": minutes,
        "raw": runs,
    }
    result["targets"] = check_targets(result)
    return result


# Settings two invocations must share for their archs to sit in one JSON (--merge).
MERGE_KEYS = ("images", "test_images", "batch_size", "workers", "warmup", "steps", "epochs", "compile",
              "prune_repeats")


def earlier_runs(path: Path, args, device: torch.device) -> dict:
    """The raw measurements of other archs in an earlier JSON of this device, if their settings match."""
    if not path.exists():
        return {}
    previous = json.loads(path.read_text())
    if previous.get("device") != device_name(device) or "raw" not in previous:
        raise SystemExit(f"--merge: {path} holds no raw measurements of {device_name(device)}; "
                         f"move it away or run without --merge")
    for key in MERGE_KEYS:
        if previous["settings"].get(key) != getattr(args, key):
            raise SystemExit(f"--merge: {path} was measured with {key}={previous['settings'].get(key)!r}, "
                             f"this run uses {getattr(args, key)!r}; use the same settings or run without --merge")
    return {arch: run for arch, run in previous["raw"].items() if arch not in args.arch}


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
          f"compile {s['compile']}, autocast {s['autocast']}, {s['threads']} threads, "
          f"load average {s['load_avg_1min_at_start']:.2f} at start")
    print(f"reference epoch = steps_per_epoch x seconds/step ({s['workers']} workers, {s['warmup']} warm-up + "
          f"{s['steps']} timed steps); fggp epochs: the trainer's, 1 warm-up + {s['epochs']} timed\n")
    print(f"{'arch':<10}{'pipeline':<14}{'images/s':>12}{'s/epoch':>10}{'warm-up s':>11}")
    for arch in res["images_per_second"]:
        for name in PIPELINES:
            print(f"{arch:<10}{name:<14}{res['images_per_second'][arch][name]:>12.1f}"
                  f"{res['epoch_seconds'][arch][name]:>10.2f}{res['warmup_seconds'][arch][name]:>11.2f}")
    for arch, extra in res["per_epoch_extra_seconds"].items():
        print(f"{arch}: evaluation {extra['eval_seconds']:.2f} s and checkpoint write {extra['checkpoint_seconds']:.2f} s "
              f"per epoch")
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
        f"Measured {res['date']}, torch {res['torch']}: batch {s['batch_size']}, {s['images']} synthetic training "
        f"and {s['test_images']} test images, compile {s['compile']}, autocast {s['autocast']}, {s['threads']} "
        f"threads (load average {s['load_avg_1min_at_start']:.2f} at start). Reference: {s['workers']} loader "
        f"workers, {s['warmup']} warm-up + {s['steps']} timed steps, epoch = steps per epoch x seconds per step. "
        f"fggp: the run's trainer, 1 warm-up + {s['epochs']} timed epoch(s).",
        "",
        "| arch | reference img/s | fggp img/s | fggp masked img/s | speedup vs reference | masked / dense "
        "| fggp s/epoch | eval + checkpoint s/epoch | projected 160-epoch run (min) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arch, ips in res["images_per_second"].items():
        extra = res["per_epoch_extra_seconds"][arch]
        lines.append(f"| {arch} | {ips['reference']:.1f} | {ips['fggp']:.1f} | {ips['fggp_masked']:.1f} "
                     f"| {res['speedup_vs_reference'][arch]:.2f}x | {res['masked_over_dense'][arch]:.3f} "
                     f"| {res['epoch_seconds'][arch]['fggp']:.2f} "
                     f"| {extra['eval_seconds'] + extra['checkpoint_seconds']:.2f} "
                     f"| {res['projected_run_minutes'][arch]:.2f} |")
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


def device_slug(device: torch.device) -> str:
    """The JSON's file name: ``nvidia-h100-80gb-hbm3`` on a GPU, ``cpu`` on any CPU."""
    return re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-") if device.type == "cuda" else "cpu"


# ----------------------------------------------------------------------------------------- CLI
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    parser.add_argument("--arch", default="vgg19,resnet50", help="comma-separated architectures")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=50000, help="synthetic training images (CIFAR-10 has 50000)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference pipeline")
    parser.add_argument("--test-images", type=int, default=10000, help="synthetic test images (CIFAR-10 has 10000)")
    parser.add_argument("--warmup", type=int, default=10, help="reference: untimed steps before the timed ones")
    parser.add_argument("--steps", type=int, default=50, help="reference: timed steps")
    parser.add_argument("--epochs", type=int, default=1,
                        help="fggp pipelines: timed epochs of the run's trainer, after one warm-up epoch")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the fggp pipelines (default: on for CUDA, off for CPU)")
    parser.add_argument("--prune-repeats", type=int, default=3, help="timed pruning steps per recipe (median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"),
                        help="the JSON goes to OUT_DIR/<device-slug>.json")
    parser.add_argument("--markdown", type=Path, help="write or update this device's section of this Markdown file")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other archs of an earlier OUT_DIR/<device-slug>.json measured with the same "
                             "settings (one arch per invocation when one process would take too long)")
    args = parser.parse_args(argv)

    args.arch = [a.strip() for a in args.arch.split(",") if a.strip()]
    unknown = [a for a in args.arch if a not in MODELS] or ([] if args.arch else [""])
    if unknown:
        parser.error(f"--arch: {unknown[0]!r} is not one of {', '.join(sorted(MODELS))}")
    for name, low in (("batch_size", 1), ("images", 1), ("test_images", 1), ("steps", 1), ("epochs", 1),
                      ("prune_repeats", 1), ("workers", 0), ("warmup", 0)):
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
    path = args.out_dir / f"{device_slug(device)}.json"
    runs = earlier_runs(path, args, device) if args.merge else {}
    split = synthetic_split(args.images, args.seed)
    test = synthetic_split(args.test_images, args.seed + 1)
    runs.update({arch: run_arch(arch, split, test, args, device) for arch in args.arch})
    res = summarize(runs, args, device, load_avg)
    print_report(res)
    write_atomic(path, json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {path}")
    if args.markdown:
        update_markdown(args.markdown, res)
        print(f"updated {args.markdown}")
    return res


if __name__ == "__main__":
    main()
