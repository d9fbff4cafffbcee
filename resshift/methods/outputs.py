"""Outputs made elsewhere: a folder of super-resolved images scored like any method's outputs.

``method=outputs method.params.root=DIR method.label=MyMethod`` (or ``resshift score DIR``) pairs
each image of the chosen data set with the file of the same name in ``root``: the relative path
without extension (sub-folders kept, any image extension), plus an optional ``suffix`` that the
other code appended to every name (e.g. ``"_out"``). Pairing is by name only, never by sorted
order. A data-set image with no file, an unreadable file, or a file whose size is not
``scale x`` the LR size is a failed image whose reason names the file (and both sizes): nothing is
cropped or resized. Files that match no data-set image are listed in :meth:`describe`.

Provenance: every image file under ``root`` is hashed (SHA-256) when the method is built;
:meth:`describe` carries the folder and one digest over all (relative path, hash) pairs, so two
different folders never look alike; each SR row carries its file's path and hash; a file that
changes after hashing fails its image. Timing is not measured (``measures_time = False``: the
runner reports n/a); ``nfe`` and ``source`` are what the user declares.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resshift.io import read_image_with_info
from resshift.methods.base import SRMethod
from resshift.methods.params import OutputsParams
from resshift.methods.registry import register_method
from resshift.provenance import file_sha256

#: The registry name of a method that scores outputs made elsewhere (``resshift score``); each such run is its own
#: method family in reports, named by its label.
METHOD_NAME = "outputs"

log = logging.getLogger(__name__)

_LISTED = 20  # names shown in a note before "... (+N more)"


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" ... (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")


class OutputsFolder(SRMethod):
    """Reads SR images from a folder instead of computing them (see the module docstring).

    Args:
        root: the folder of SR images (or ``params.root``).
        params / **config: :class:`~resshift.methods.params.OutputsParams` (``suffix``, ``scale``,
            ``nfe``, ``source``).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        resshift.data.loader.DatasetError: two files under ``root`` share one name (``a.png``, ``a.jpg``).
    """

    name = METHOD_NAME
    measures_time = False
    max_batch = 1  # each image fails or passes on its own
    stochastic = False
    Params = OutputsParams

    def __init__(self, root: str | Path | None = None, *, params: OutputsParams | None = None,
                 **config: Any) -> None:
        from resshift.data.loader import _stem_index

        if root is not None:
            config["root"] = str(root)
        p = self.params = self.resolve_params(params, config)
        if not p.root:
            raise ValueError("the outputs method needs method.params.root=DIR (the folder of SR images)")
        self.root = Path(p.root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: outputs folder not found")
        self.suffix = str(p.suffix or "")
        self.scale = int(p.scale)
        self.nfe = None if p.nfe is None else int(p.nfe)  # type: ignore[assignment]
        self.source = p.source
        self.files = _stem_index(self.root, recursive=True)
        if not self.files:
            raise FileNotFoundError(f"{self.root}: no image files in the outputs folder")
        self.hashes = {key: file_sha256(path) for key, path in self.files.items()}
        self._notes: dict[str, list[str]] = {}  # the reader's notes per image name, filled as files are read
        listing = "".join(f"{self.files[k].relative_to(self.root).as_posix()}\t{self.hashes[k]}\n"
                          for k in sorted(self.files))
        self.digest = hashlib.sha256(listing.encode("utf-8")).hexdigest()
        self.missing: list[str] = []
        self.unmatched: list[str] = []

    def expect_images(self, names: Sequence[str], run_names: Sequence[str] | None = None) -> None:
        """Record which images of this run have no file, and which files match no image of the whole
        data set (both listed by name)."""
        wanted = {n + self.suffix: n for n in names}
        self.missing = sorted(n for n in (names if run_names is None else run_names)
                              if n + self.suffix not in self.files)
        self.unmatched = sorted(self.files[k].relative_to(self.root).as_posix() for k in self.files if k not in wanted)
        if self.missing:
            log.warning("%d data-set images have no output in %s: %s", len(self.missing), self.root,
                        _listing(self.missing))
        if self.unmatched:
            log.warning("%d files in %s match no data-set image: %s", len(self.unmatched), self.root,
                        _listing(self.unmatched))

    def _path(self, name: str) -> Path:
        path = self.files.get(name + self.suffix)
        if path is None:
            raise FileNotFoundError(f"no output for image {name!r}: {self.root}/{name + self.suffix}.* not found")
        return path

    def read(self, name: str, lr_hw: Sequence[int]) -> torch.Tensor:
        """The SR image of ``name`` as ``(3, H, W)`` float32 in ``[0, 1]``, checked against ``scale x lr_hw``.

        Raises:
            FileNotFoundError: no file for ``name``.
            ValueError: wrong size (both sizes given), or the file changed since it was hashed.
        """
        path = self._path(name)
        if file_sha256(path) != self.hashes[name + self.suffix]:
            raise ValueError(f"{path}: file changed after the run started (SHA-256 differs); rerun")
        image, info = read_image_with_info(path)
        self._notes[name] = [f"sr: {note}" for note in info.notes]
        want = (int(lr_hw[0]) * self.scale, int(lr_hw[1]) * self.scale)
        if tuple(image.shape[-2:]) != want:
            raise ValueError(
                f"{path}: SR image is {image.shape[-2]}x{image.shape[-1]} (HxW), expected {want[0]}x{want[1]} "
                f"= {self.scale} x LR {lr_hw[0]}x{lr_hw[1]}; outputs are never cropped or resized"
            )
        return image

    def upscale_named(self, names: Sequence[str], lr: torch.Tensor,
                      generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """The files of ``names`` (one per LR image of the batch), as ``(B, 3, sH, sW)`` in ``[0, 1]``."""
        if len(names) != lr.shape[0]:
            raise ValueError(f"{len(names)} names for a batch of {lr.shape[0]} images")
        return torch.stack([self.read(n, lr.shape[-2:]) for n in names]).to(lr.device)

    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        raise TypeError("the outputs method reads files by image name: call upscale_named(names, lr)")

    def output_notes(self, name: str) -> list[str]:
        """The reader's notes on the file scored for ``name`` (``sr: alpha channel dropped (NOT fully opaque)``,
        ``sr: EXIF orientation 3 applied``, ...), as for the LR inputs."""
        return list(self._notes.get(name, []))

    def image_facts(self, name: str) -> dict[str, Any]:
        """The file scored for ``name`` (path relative to ``root``) and its SHA-256."""
        key = name + self.suffix
        return {"sr_file": self.files[key].relative_to(self.root).as_posix(), "sr_sha256": self.hashes[key]}

    def describe(self) -> dict[str, object]:
        notes = []
        if self.missing:
            notes.append(f"{len(self.missing)} data-set image(s) have no output file: {_listing(self.missing)}")
        if self.unmatched:
            notes.append(f"{len(self.unmatched)} file(s) match no data-set image: {_listing(self.unmatched)}")
        return {
            **super().describe(),
            "family": "outputs made elsewhere",
            "root": str(self.root),
            "suffix": self.suffix,
            "source": self.source,
            "n_files": len(self.files),
            "files_sha256": self.digest,
            "files_sha256_rule": "SHA-256 of the sorted lines '<relative path>\\t<file SHA-256>\\n'",
            "measures_time": False,
            "missing_outputs": self.missing,
            "unmatched_outputs": self.unmatched,
            "notes": notes,
        }


@register_method(METHOD_NAME, OutputsParams)
def _build(params: OutputsParams) -> OutputsFolder:
    return OutputsFolder(params=params)
