"""The ``resshift`` command: one entry point, one module of this package per sub-command.

Each module exposes ``register(subparsers)`` that adds its sub-command; each sets ``func`` to a
callable taking the parsed arguments and returning an exit code. ``resshift eval ...`` and
``resshift train ...`` pass their Hydra overrides through to the evaluation and training apps
(``python -m resshift.runner.app`` / ``python -m resshift.train.app`` remain as aliases).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands. Each has ``register(subparsers) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "resshift.cli.sr",
    "resshift.cli.eval",
    "resshift.cli.train",
    "resshift.cli.data",
    "resshift.cli.metrics",
    "resshift.cli.report",
    "resshift.cli.score",
    "resshift.cli.weights",
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


#: Sub-commands whose every argument (Hydra flags included) goes to a Hydra app unparsed.
PASS_THROUGH: tuple[str, ...] = ("eval", "train")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        args = parser.parse_args(argv[:1])
        args.overrides = argv[1:]
    else:
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
