"""Hydra callbacks: a combined report at the end of a sweep (``-m``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """After a multirun, write one report over every run folder of the sweep (``<sweep dir>/report``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("report", True):
            return
        from resshift.reports import write_report

        root = Path(config.hydra.sweep.dir)
        try:
            out = write_report([root], root / "report", title=f"Evaluation report: {root.name}")
        except FileNotFoundError as err:
            log.warning("no sweep report: %s", err)
            return
        print(f"sweep report: {out}")
