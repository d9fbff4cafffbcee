"""``resshift train [OVERRIDES ...]``: train a model, Hydra overrides passed through to
:mod:`resshift.train.app` (e.g. ``resshift train model=small-sr3 steps=100``)."""

from __future__ import annotations

import argparse

from resshift.cli.hydra_app import add_hydra_command


def _app():
    from resshift.train.app import main

    return main


def register(subparsers: argparse._SubParsersAction) -> None:
    add_hydra_command(subparsers, "train", "train ResShift, SR3-style models or priors (Hydra app)", _app)
