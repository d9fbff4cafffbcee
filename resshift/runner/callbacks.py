"""Hydra callbacks: a combined report at the end of a sweep (``-m``), and its exit status.

A sweep whose runs lost images exits with 1 after its report is written, naming the runs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """After a multirun, write one report over the run folders this sweep worked in (``<sweep dir>/report``),
    then exit with 1 if any of them has failed images.

    The sweep directory (``run.root``) also holds the folders of earlier runs and sweeps; the sweep's own are
    those whose row files, summary or skip record were written after it started (the start taken as the time
    stamp of a file written there, so that jobs on other machines of a shared file system compare alike)."""

    def __init__(self) -> None:
        self.started_ns: int | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        root.mkdir(parents=True, exist_ok=True)
        marker = root / f".sweep-start-{os.getpid()}-{time.time_ns()}"
        marker.touch()
        self.started_ns = marker.stat().st_mtime_ns
        marker.unlink()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        folders = sweep_folders(root, self.started_ns)
        if config.get("report", True):
            from resshift.reports import write_report

            try:
                if not folders:
                    raise FileNotFoundError(f"no run folder under {root} was written by this sweep")
                out = write_report(folders, root / "report", title=f"Evaluation report: {root.name}")
                print(f"sweep report: {out}")
            except FileNotFoundError as err:
                log.warning("no sweep report: %s", err)
        lost = _runs_with_failures(folders)
        if lost:
            for run_dir, n_failed in lost:
                print(f"error: {n_failed} image(s) failed in {run_dir} (listed in its summary.md)", file=sys.stderr)
            sys.exit(1)


def sweep_folders(root: Path, started_ns: int | None) -> list[Path]:
    """The run folders below ``root`` with a row file, summary or skip record written at or after ``started_ns``
    (all run folders below ``root`` for ``None``), sorted."""
    from resshift.runfolder import SKIPPED_JSON, SUMMARY_JSON

    found: set[Path] = set()
    for pattern in ("**/records/*.jsonl", f"**/{SUMMARY_JSON}", f"**/{SKIPPED_JSON}"):
        for path in root.glob(pattern):
            if path.is_file() and (started_ns is None or path.stat().st_mtime_ns >= started_ns):
                folder = path.parent.parent if path.parent.name == "records" else path.parent
                if folder != root / "report" and root / "report" not in folder.parents:
                    found.add(folder)
    return sorted(found)


def _runs_with_failures(folders: list[Path]) -> list[tuple[Path, int]]:
    """``(run folder, failed images)`` for every run among ``folders`` whose summary lost images."""
    from resshift.runfolder import RunFolder, find_run_dirs

    out = []
    for run_dir in find_run_dirs(folders):
        n_failed = int(RunFolder(run_dir).summary().get("n_failed") or 0)
        if n_failed:
            out.append((run_dir, n_failed))
    return out
