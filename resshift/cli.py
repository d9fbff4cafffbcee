"""The ``resshift`` command: one entry point, one sub-command module per area.

Each area module exposes ``register(subparsers)`` that adds its sub-commands; each sub-command sets
``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands. Each has ``register(subparsers) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "resshift.cli_sr",
    "resshift.data.cli",
    "resshift.metrics.cli",
    "resshift.reports.cli",
    "resshift.score_cli",
    "resshift.train.cli",
    "resshift.weights_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resshift",
        description="ResShift reference, baselines and the evaluation suite for x4 diffusion SR.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
