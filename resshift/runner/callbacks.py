"""Hydra callbacks: a combined report at the end of a sweep (``-m``), and its exit status.

A sweep whose runs lost images exits with 1 after its report is written, naming the runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """After a multirun, write one report over every run folder of the sweep (``<sweep dir>/report``),
    then exit with 1 if any run of the sweep has failed images."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        if config.get("report", True):
            from resshift.reports import write_report

            try:
                out = write_report([root], root / "report", title=f"Evaluation report: {root.name}")
                print(f"sweep report: {out}")
            except FileNotFoundError as err:
                log.warning("no sweep report: %s", err)
        lost = _runs_with_failures(root)
        if lost:
            for run_dir, n_failed in lost:
                print(f"error: {n_failed} image(s) failed in {run_dir} (listed in its summary.md)", file=sys.stderr)
            sys.exit(1)


def _runs_with_failures(root: Path) -> list[tuple[Path, int]]:
    """``(run folder, failed images)`` for every run below ``root`` that lost images."""
    from resshift.runfolder import RunFolder, find_run_dirs

    out = []
    for run_dir in find_run_dirs([root]):
        n_failed = int(RunFolder(run_dir).summary().get("n_failed") or 0)
        if n_failed:
            out.append((run_dir, n_failed))
    return out
