"""``resshift eval [OVERRIDES ...]``: one evaluation run or a sweep (``-m``), Hydra overrides passed
through to :mod:`resshift.runner.app` (e.g. ``resshift eval method=bicubic dataset=embedded``)."""

from __future__ import annotations

import argparse

from resshift.cli.hydra_app import add_hydra_command


def _app():
    from resshift.runner.app import main

    return main


def register(subparsers: argparse._SubParsersAction) -> None:
    add_hydra_command(subparsers, "eval", "evaluate methods on data sets (Hydra app)", _app)
