"""Append-only row stores (JSON Lines): results are written as they are produced and a rerun resumes.

Each row is one strict JSON object (no NaN or Infinity: writing one raises) on one line, written
with a single ``write`` and flushed to disk. A process killed mid-write can leave at most one
partial line at the end; opening the store repairs
that by cutting the file back to its last complete line, so no finished row is lost and none is
duplicated. Rows are keyed (by image name); :meth:`RowStore.done` tells a rerun what to skip. Each row
records when it was written (``written_ns``, nanoseconds since the epoch), so that the rows of one image in
the files of several shards (a run resumed with another number of processes) are ordered by time, not by
file name (:meth:`resshift.runfolder.RunFolder.rows`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from resshift.atomic import write_text


class RowStore:
    """A JSON Lines file of rows keyed by ``key_field``; the last row for a key wins."""

    def __init__(self, path: str | Path, key_field: str = "name", writer: bool = True) -> None:
        """``writer=False``: a reader (a report, a resume deciding what to skip) that never changes the file: a
        partial last line, which may be a live writer's row in progress, is skipped instead of cut."""
        self.path = Path(path)
        self.key_field = key_field
        if writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair()

    def _repair(self) -> None:
        """Cut a trailing partial line (from a killed writer) so appends start on a fresh line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1  # 0 when there is no complete line at all
            fh.seek(cut)
            fh.truncate()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    return  # a row still being written (a reader does not cut it, see __init__)
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}:{lineno}: corrupt row ({err})") from err

    def rows(self) -> list[dict[str, Any]]:
        """All rows, the last one per key, in first-seen key order."""
        latest: dict[Any, dict[str, Any]] = {}
        for row in self:
            latest[row[self.key_field]] = row
        return list(latest.values())

    def done(self, status_field: str = "status", ok_value: str = "ok") -> set[str]:
        """Keys whose latest row has ``status == ok``."""
        return {r[self.key_field] for r in self.rows() if r.get(status_field, ok_value) == ok_value}

    def append(self, row: dict[str, Any]) -> None:
        """Write one row durably (single write, flush, fsync), stamped with ``written_ns`` (the time of writing)."""
        if self.key_field not in row:
            raise KeyError(f"row has no {self.key_field!r} field: {row}")
        row = {**row, "written_ns": time.time_ns()}
        line = json.dumps(row, sort_keys=True, default=_json_default, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.append(row)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: str | Path, data: Any) -> Path:
    """Write strict JSON (NaN or Infinity raise ``ValueError``) atomically, through a temporary file
    of its own in the same folder, so concurrent writers never share one."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"
    return write_text(path, text)
