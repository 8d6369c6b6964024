"""The shell interface, with one-line errors for bad input and no tracebacks.

    fggp run key=value ... [--out DIR]          one run (fields of fggp.train.RunConfig; --help lists them)
    fggp sweep GRID.yaml [--jobs N] [--out DIR] [--executor local|submitit-local|slurm ...]
                                                a grid of runs through the run notebook, then the report
    fggp sweep GRID.yaml --dry-run [--out DIR]  where each point of the grid stands; runs nothing
    fggp sweep GRID.yaml --from-records DIR     first copy in the finished runs of committed records
    fggp report [RUNS_DIR] [--subject RECIPE]   the aggregation alone
    fggp results SWEEP_OUT... --out DOC.md      several sweeps in one evidence document (docs/RESULTS.md)
    fggp export RUN_DIR [--out DIR]             a completed run as small files, with measured size and speed
    fggp records SWEEP_OUT DEST                 a sweep's compact records (what `fggp results` reads) to commit
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import typing

from .data import DatasetChecksumError, DatasetUnavailableError


def _run(args) -> int:
    from .train import RunConfig, run

    config = RunConfig.from_strings(args.overrides)
    result = run(config, args.out, retry_diverged=args.retry_diverged)
    return 0 if result["status"] == "completed" else 1


def _sweep(args) -> int:
    from .sweep import check_options, count_states, status, summarize, sweep

    if args.dry_run:  # the options too: a dry run is how a command line is tried before a long sweep
        check_options(jobs=args.jobs, executor=args.executor, partition=args.partition,
                      gpus_per_run=args.gpus_per_run, timeout_min=args.timeout_min,
                      array_parallelism=args.array_parallelism)
        table = status(args.grid, args.out, from_records=args.from_records)
        print(table.to_string(index=False))
        print(count_states(table), flush=True)
        return 0

    line, ok = summarize(sweep(args.grid, args.out, jobs=args.jobs, executor=args.executor, partition=args.partition,
                               gpus_per_run=args.gpus_per_run, timeout_min=args.timeout_min,
                               array_parallelism=args.array_parallelism, retry_diverged=args.retry_diverged,
                               make_report=not args.no_report, from_records=args.from_records))
    print(line, flush=True)
    return 0 if ok else 1


def _report(args) -> int:
    from .sweep import report

    report(args.runs_dir, args.report_dir, subject=args.subject)
    return 0


def _results(args) -> int:
    from .results import write_results

    command = "fggp results " + " ".join(args.sweeps) + f" --out {args.out}" + (
        f" --subject {args.subject}" if args.subject != "fggp" else "")
    print(f"results: {write_results(args.sweeps, args.out, command, args.subject)}", flush=True)
    return 0


def _export(args) -> int:
    from .export import export_run

    export_run(args.run_dir, args.out, repeats=args.repeats, measure=not args.no_measure)  # it logs where and what
    return 0


def _records(args) -> int:
    from .records import write_records

    write_records(args.sweep, args.dest)  # it logs what it copied and what it left out
    return 0


def _allowed(name: str) -> str:
    from .data import DATASETS
    from .models import MODELS
    from .pruning import RECIPES
    from .train.config import PRECISIONS

    return {"arch": ", ".join(MODELS), "dataset": ", ".join(DATASETS), "recipe": ", ".join(RECIPES),
            "precision": ", ".join(PRECISIONS), "device": "auto, cpu, cuda, cuda:N",
            "target_sparsity": "[0, 1)", "initial_sparsity": "[0, 1), <= target_sparsity",
            "rate": "(0, 1]; two-step recipes only", "grad_window": ">= 1; recipes that read gradients only",
            "lr": "> 0, finite", "weight_decay": ">= 0, finite", "lr_gamma": "(0, 1]",
            "lr_milestones": "fractions in [0, 1], comma-separated", "epochs": ">= 1", "batch_size": ">= 1",
            "prune_every": ">= 1 (optimizer steps)", "prune_end_epoch": "<= epochs",
            "prune_start_epoch": "<= prune_end_epoch", "extra": "JSON object",
            "optimizer": "sgd, adamw", "lr_schedule": "step, cosine", "warmup_epochs": "0 .. epochs",
            "betas": "two numbers in [0, 1), comma-separated; adamw only", "eps": "(0, 1]; adamw only",
            "momentum": "[0, 1); sgd only", "nesterov": "sgd only",
            "include": "globs over parameter names, comma-separated; empty: the default layers' weights",
            "exclude": "globs over parameter names, comma-separated",
            "plugins": ".py files or module names, comma-separated",
            "pattern": "N:M such as 2:4 (quote it in YAML); target_sparsity must then be 1 - N/M"}.get(name, "")


def _fields_help() -> str:
    """Every RunConfig field with its type, default and allowed values: the help of ``fggp run``."""
    from .train import RunConfig

    hints = typing.get_type_hints(RunConfig)
    lines = ["fields (key=value; each at most once):"]
    for f in dataclasses.fields(RunConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
        allowed = _allowed(f.name)
        lines.append(f"  {f.name:<18} {kind:<20} default {default!r}" + (f"  ({allowed})" if allowed else ""))
    lines.append("bool fields take true/false; fields typed '| None' take none.")
    return "\n".join(lines)


class _UsageError(Exception):
    """A command line argparse cannot parse, as one line naming the option."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line that names the option (``jobs: invalid int value: 'x'``), like
    every other error of the command, instead of a usage block."""

    def error(self, message):
        found = re.match(r"argument (-{0,2}[\w-]+)(?:/\S+)?: (.*)", message)
        if found:
            name = found.group(1).lstrip("-").replace("-", "_")
            message = found.group(2) if found.group(2).startswith(f"{name}:") else f"{name}: {found.group(2)}"
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fggp", description="Gradual pruning research kit.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train one run (arch x recipe x sparsity x seed), resuming if it exists",
                       description="Fields of fggp.train.RunConfig as key=value, e.g. arch=resnet20 recipe=gmp.",
                       epilog=_fields_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--out", default="outputs/runs", help="directory holding one subdirectory per run")
    p.add_argument("--retry-diverged", action="store_true", help="train a run that diverged before again")
    p.set_defaults(func=_run)
    p = sub.add_parser("sweep", help="run every point of a grid through the run notebook, then report")
    p.add_argument("grid", help="grid YAML (see configs/quick.yaml)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, >= 1 (one GPU each when several exist)")
    p.add_argument("--out", default="outputs", help="runs land in OUT/runs, the report in OUT/report")
    p.add_argument("--executor", default="local", help="local (default), submitit-local or slurm")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per SLURM job (>= 0)")
    p.add_argument("--timeout-min", type=float, default=24 * 60,
                   help="time limit per job in minutes (> 0); it is requeued after")
    p.add_argument("--array-parallelism", type=int, default=None, help="SLURM jobs at a time, >= 1 (default: --jobs)")
    p.add_argument("--dry-run", action="store_true",
                   help="list every point with its state (completed, outputs missing, damaged, failed, diverged, "
                        "running, interrupted, pending, not applicable) and run nothing")
    p.add_argument("--retry-diverged", action="store_true", help="train the points that diverged before again")
    p.add_argument("--from-records", default=None, metavar="RECORDS",
                   help="copy the finished runs of a records folder (fggp records) in first; train only the rest")
    p.add_argument("--no-report", action="store_true",
                   help="skip notebook 03 at the end (a grid run in parts; run `fggp report OUT/runs` later)")
    p.set_defaults(func=_sweep)
    p = sub.add_parser("report", help="aggregate the results under RUNS_DIR into tables and figures")
    p.add_argument("runs_dir", nargs="?", default="outputs/runs")
    p.add_argument("--report-dir", default=None, help="default: RUNS_DIR/../report")
    p.add_argument("--subject", default=None,
                   help="the recipe compared with every other, paired by seed (default: fggp, where it ran)")
    p.set_defaults(func=_report)
    p = sub.add_parser("results", help="write one evidence document (tables, figures, findings) from sweeps")
    p.add_argument("sweeps", nargs="+", metavar="SWEEP_OUT", help="a sweep's --out folder (holding runs/)")
    p.add_argument("--out", default="docs/RESULTS.md", help="the Markdown file; figures go to its folder's results/")
    p.add_argument("--subject", default="fggp", help="the recipe whose wins and losses the findings spell out")
    p.set_defaults(func=_results)
    p = sub.add_parser("export", help="a completed run as a plain state_dict, a sparse safetensors file and ONNX, "
                                      "with measured size and latency (export.json)")
    p.add_argument("run_dir", help="a completed run's directory (OUT/runs/<run-id>)")
    p.add_argument("--out", default=None, help="default: RUN_DIR/export")
    p.add_argument("--repeats", type=int, default=20, help="timed forward passes per batch size (median)")
    p.add_argument("--no-measure", action="store_true", help="write the files, skip the latency measurement")
    p.set_defaults(func=_export)
    p = sub.add_parser("records", help="copy a sweep's compact records (result.json, config.json, metrics.jsonl "
                                       "per run, and sweep.json) to DEST, e.g. docs/results/NAME, to commit")
    p.add_argument("sweep", metavar="SWEEP_OUT", help="a sweep's --out folder (holding runs/ and sweep.json)")
    p.add_argument("dest", help="the records' folder; replaced whole (atomically) when it exists")
    p.set_defaults(func=_records)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as err:
        print(f"fggp: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ValueError, DatasetUnavailableError, DatasetChecksumError) as err:
        print(f"fggp: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. a disk that filled up: one line, not a traceback
        print(f"fggp: error: {err.filename or 'os'}: {err.strerror or err}", file=sys.stderr)
        return 1
    except Exception as err:  # a notebook's own check (papermill carries the cell's exception): one line too
        if getattr(err, "ename", None) != "ValueError":
            raise
        print(f"fggp: error: {str(err.evalue).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
