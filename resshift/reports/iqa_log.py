"""Per-image scores published as a log of OSEDiff's ``test_metrics.py`` (pyiqa), read as data.

OSEDiff (github.com/cswry/OSEDiff, ``test_metrics.py``) scores a folder of SR images against a
folder of HR images with pyiqa and logs, through Python's ``logging``, one line per image and one
block of averages per folder::

    24-10-23 17:29:03.278 - INFO: results_osediff/Canon_001_LR4.png | PSNR: 25.793726; ... | Runtime: 1.06 sec
    24-10-23 17:29:51.394 - INFO:
    ===== Average Metrics for [results_osediff] =====
    PSNR: 25.1511; SSIM: 0.7341; ... | FID: 123.493817 | FID Runtime: 6.79 sec

Per-image values have 6 decimals, averages 4 (the mean of the per-image values, rounded).
:data:`OSEDIFF_COLUMNS` says which metric of this suite's registry each column is, following the
script's ``pyiqa.create_metric`` calls (OSEDiff commit fcc4f09).

:func:`parse_iqa_log` reads such a log into :class:`IqaLogSection` objects (one per scored folder);
anything it cannot read raises :class:`IqaLogError` naming the file and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

#: Log column -> (registry metric name, what the column is in OSEDiff's test_metrics.py). PSNR is
#: pyiqa ``psnr(test_y_channel=True, color_space='ycbcr')`` = ``psnr-y-float`` except for pyiqa's
#: 1e-8 added to the MSE (:func:`pyiqa_psnr_from_float_y`); SSIM is pyiqa ``ssim`` (cs clamped at 0).
OSEDIFF_COLUMNS: dict[str, tuple[str, str]] = {
    "PSNR": ("psnr-y-float", "pyiqa psnr(test_y_channel=True, color_space='ycbcr')"),
    "SSIM": ("ssim-pyiqa", "pyiqa ssim(test_y_channel=True, color_space='ycbcr')"),
    "LPIPS": ("lpips", "pyiqa lpips"),
    "DISTS": ("dists", "pyiqa dists"),
    "CLIPIQA": ("clipiqa", "pyiqa clipiqa"),
    "NIQE": ("niqe", "pyiqa niqe"),
    "MUSIQ": ("musiq", "pyiqa musiq"),
    "MANIQA": ("maniqa-pipal", "pyiqa maniqa-pipal"),
}

#: What pyiqa's PSNR adds to the mean squared error of [0, 1] images (its ``eps``).
PYIQA_PSNR_EPS = 1e-8

_AVERAGE_HEADER = re.compile(r"=====\s*Average Metrics for \[(?P<dir>[^\]]*)\]\s*=====")
_LOG_PREFIX = re.compile(r"^\d{2}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? - [A-Z]+: ")
_PAIR = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z0-9_-]*)\s*:\s*(?P<value>\S+)\s*$")


class IqaLogError(ValueError):
    """A log line that cannot be read. The message starts with ``file:line:``."""


@dataclass
class IqaLogSection:
    """The scores of one folder of SR images in a log.

    Attributes:
        folder: the folder's name as logged (``results_osediff``).
        images: image stem (file name without extension: the data-set item name) -> {column: value}.
        files: image stem -> the file name as logged (``Canon_001_LR4.png``).
        lines: image stem -> the 1-based line of the log it was read from.
        averages: {column: value} of the folder's average block (4 decimals), empty if absent.
        fid: the folder's FID from the average block, or None.
        average_line: the 1-based line of the average values, or None.
    """

    folder: str
    images: dict[str, dict[str, float]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    averages: dict[str, float] = field(default_factory=dict)
    fid: float | None = None
    average_line: int | None = None

    @property
    def columns(self) -> list[str]:
        """The metric columns of the per-image lines, in log order."""
        first = next(iter(self.images.values()), {})
        return list(first)

    def column(self, name: str) -> dict[str, float]:
        """image stem -> value of one column. ``KeyError`` when the log has no such column."""
        if name not in self.columns:
            raise KeyError(f"log section {self.folder!r} has no column {name!r}; it has {', '.join(self.columns)}")
        return {stem: values[name] for stem, values in self.images.items()}


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise IqaLogError(f"{where}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise IqaLogError(f"{where}: {what} is not finite: {text!r}")
    return value


def _pairs(text: str, where: str) -> dict[str, float]:
    """``"A: 1.0; B: 2.0"`` -> {"A": 1.0, "B": 2.0}; duplicate or malformed entries raise."""
    out: dict[str, float] = {}
    for part in text.split(";"):
        m = _PAIR.match(part)
        if m is None:
            raise IqaLogError(f"{where}: expected 'NAME: value' entries separated by ';', got {part.strip()!r}")
        key = m["key"]
        if key in out:
            raise IqaLogError(f"{where}: column {key} appears twice")
        out[key] = _number(m["value"], where, key)
    return out


def _looks_like_pairs(text: str) -> bool:
    """Whether ``text`` is ``NAME: value`` entries separated by ``;`` (whatever the values)."""
    parts = [p for p in text.split(";") if p.strip()]
    return bool(parts) and all(_PAIR.match(p) for p in parts)


def parse_iqa_log(text: str, source: str | Path = "<log>") -> dict[str, IqaLogSection]:
    """Read a ``test_metrics.py`` log; return its sections by folder name, in log order.

    Args:
        text: the whole log.
        source: the file name used in error messages.

    Raises:
        IqaLogError: a per-image line or average block that cannot be read (not a number, not
            finite, a repeated column, columns that differ from the section's first line, an image
            logged twice, an average block with no values after it, a per-image line behind a prefix
            other than the log's timestamp), or a log with no per-image line at all. The message
            names ``source`` and the 1-based line.
    """
    sections: dict[str, IqaLogSection] = {}
    lines = text.splitlines()
    pending_average: tuple[str, int] | None = None  # (folder, header line) awaiting its values
    for number, raw in enumerate(lines, start=1):
        where = f"{source}:{number}"
        line = _LOG_PREFIX.sub("", raw).strip()
        if pending_average is not None:
            if not line:
                continue
            folder, header = pending_average
            pending_average = None
            parts = [p.strip() for p in line.split("|")]
            section = sections.setdefault(folder, IqaLogSection(folder))
            if section.average_line is not None:
                raise IqaLogError(f"{where}: second average block for folder {folder!r} "
                                  f"(first at line {section.average_line})")
            section.averages = _pairs(parts[0], where)
            section.average_line = number
            if section.images and list(section.averages) != section.columns:
                raise IqaLogError(f"{where}: average columns {', '.join(section.averages)} differ from the "
                                  f"per-image columns {', '.join(section.columns)}")
            for extra in parts[1:]:
                m = _PAIR.match(extra)
                if m and m["key"] == "FID":
                    section.fid = _number(m["value"], where, "FID")
            continue
        header_match = _AVERAGE_HEADER.search(line)
        if header_match:
            pending_average = (header_match["dir"], number)
            continue
        if " | " not in line:
            continue  # configuration, progress and banner lines
        head, _, rest = line.partition(" | ")
        if "/" not in head:
            continue  # not a per-image line (an average line without its header leaves averages empty)
        if ":" in head:
            prefix, _, tail = head.rpartition(" ")
            if "/" in tail and ":" not in tail and _looks_like_pairs(rest.split(" | ")[0]):
                raise IqaLogError(f"{where}: per-image line behind an unknown prefix {prefix!r} (the log's lines "
                                  "start 'YY-MM-DD HH:MM:SS.fff - LEVEL: ', or with the image path)")
            continue  # an average line without its header, or configuration text
        path = PurePosixPath(head.strip())
        folder, file = str(path.parent), path.name
        metrics_text = rest.split(" | ")[0]
        values = _pairs(metrics_text, where)
        section = sections.setdefault(folder, IqaLogSection(folder))
        stem = path.stem
        if stem in section.images:
            raise IqaLogError(f"{where}: image {file} of folder {folder!r} logged twice "
                              f"(first at line {section.lines[stem]})")
        if section.images and list(values) != section.columns:
            first = section.lines[next(iter(section.images))]
            raise IqaLogError(f"{where}: columns {', '.join(values)} differ from line {first}'s "
                              f"{', '.join(section.columns)}")
        section.images[stem] = values
        section.files[stem] = file
        section.lines[stem] = number
    if pending_average is not None:
        raise IqaLogError(f"{source}:{pending_average[1]}: average block for folder {pending_average[0]!r} "
                          "has no values after it")
    if not any(s.images for s in sections.values()):
        raise IqaLogError(f"{source}: no per-image lines ('<folder>/<file> | NAME: value; ...') found")
    return sections


def read_iqa_log(path: str | Path) -> dict[str, IqaLogSection]:
    """:func:`parse_iqa_log` of a file (UTF-8). ``IqaLogError`` / ``OSError`` name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise IqaLogError(f"{path}: not a UTF-8 text log ({err})") from err
    return parse_iqa_log(text, source=path)


def pyiqa_psnr_from_float_y(psnr_db: float) -> float:
    """pyiqa's Y PSNR from this suite's ``psnr-y-float`` of the same images (dB -> dB).

    pyiqa computes ``10 log10(1 / (MSE + 1e-8))`` on [0, 1] data; ``psnr-y-float`` is
    ``10 log10(1 / MSE)`` (peak 255 on 0..255 data: the same MSE ratio). So the pyiqa value is
    ``-10 log10(10^(-psnr/10) + 1e-8)``: 4e-5 dB lower at 30 dB, 0.004 dB lower at 50 dB.
    """
    return -10.0 * math.log10(10.0 ** (-psnr_db / 10.0) + PYIQA_PSNR_EPS)
