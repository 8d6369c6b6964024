"""The shell interface, with one-line errors for bad input and no tracebacks.

    fggp run key=value ... [--out DIR]          one run (fields of fggp.train.RunConfig)
    fggp sweep GRID.yaml [--jobs N] [--out DIR] [--executor local|submitit-local|slurm ...]
                                                a grid of runs through the run notebook, then the report
    fggp sweep GRID.yaml --dry-run [--out DIR]  where each point of the grid stands; runs nothing
    fggp report [RUNS_DIR]                      the aggregation alone
"""

from __future__ import annotations

import argparse
import sys

from .data import DatasetChecksumError, DatasetUnavailableError


def _run(args) -> int:
    from .train import RunConfig, run

    config = RunConfig.from_strings(args.overrides)
    result = run(config, args.out)
    return 0 if result["status"] == "completed" else 1


def _sweep(args) -> int:
    from .sweep import count_states, status, summarize, sweep

    if args.dry_run:
        table = status(args.grid, args.out)
        print(table.to_string(index=False) if len(table) else "(no points)")
        print(count_states(table), flush=True)
        return 0

    line, ok = summarize(sweep(args.grid, args.out, jobs=args.jobs, executor=args.executor, partition=args.partition,
                               gpus_per_run=args.gpus_per_run, timeout_min=args.timeout_min,
                               array_parallelism=args.array_parallelism))
    print(line, flush=True)
    return 0 if ok else 1


def _report(args) -> int:
    from .sweep import report

    report(args.runs_dir, args.report_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fggp", description="Gradual pruning research kit.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train one run (arch x recipe x sparsity x seed), resuming if it exists",
                       description="Fields of fggp.train.RunConfig as key=value, e.g. arch=resnet20 recipe=gmp.")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--out", default="outputs/runs", help="directory holding one subdirectory per run")
    p.set_defaults(func=_run)
    p = sub.add_parser("sweep", help="run every point of a grid through the run notebook, then report")
    p.add_argument("grid", help="grid YAML (see configs/quick.yaml)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one GPU each when several exist)")
    p.add_argument("--out", default="outputs", help="runs land in OUT/runs, the report in OUT/report")
    p.add_argument("--executor", default="local", help="local (default), submitit-local or slurm")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus-per-run", type=int, default=1, help="GPUs per SLURM job")
    p.add_argument("--timeout-min", type=float, default=24 * 60, help="time limit per job; it is requeued after")
    p.add_argument("--array-parallelism", type=int, default=None, help="SLURM jobs at a time (default: --jobs)")
    p.add_argument("--dry-run", action="store_true",
                   help="list every point with its state (completed, failed, diverged, running, interrupted, "
                        "pending) and run nothing")
    p.set_defaults(func=_sweep)
    p = sub.add_parser("report", help="aggregate the results under RUNS_DIR into tables and figures")
    p.add_argument("runs_dir", nargs="?", default="outputs/runs")
    p.add_argument("--report-dir", default=None, help="default: RUNS_DIR/../report")
    p.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, DatasetUnavailableError, DatasetChecksumError) as err:
        print(f"fggp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
