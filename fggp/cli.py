"""``fggp run key=value ... [--out DIR]``: one run from the shell, with one-line errors for bad input."""

from __future__ import annotations

import argparse
import sys

from .data import DatasetChecksumError, DatasetUnavailableError


def _run(args) -> int:
    from .train import RunConfig, run

    config = RunConfig.from_strings(args.overrides)
    result = run(config, args.out)
    return 0 if result["status"] == "completed" else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fggp", description="Gradual pruning research kit.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train one run (arch x recipe x sparsity x seed), resuming if it exists",
                       description="Fields of fggp.train.RunConfig as key=value, e.g. arch=resnet20 recipe=gmp.")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--out", default="outputs/runs", help="directory holding one subdirectory per run")
    p.set_defaults(func=_run)
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
