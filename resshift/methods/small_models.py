"""The small models trained on CPU by this suite and shipped inside the package, as presets.

Each is a :class:`~resshift.methods.registry.Preset`: a registered method with the shipped weights
(:mod:`resshift.weights.shipped`) as its default ``checkpoint`` and the training-size tiling, every
other parameter that of the method (overridable, validated by the method's parameter dataclass):

* ``small-resshift``: pixel-space ResShift (``resshift-pixel``), native steps;
* ``small-sr3``: SR3-style conditional DDPM/DDIM (``sr3``), any NFE;
* ``small-ddnm`` / ``small-ddrm``: guided prior (``ddnm`` / ``ddrm``, ``prior="ours"``) on ``small-prior``.

All of them run, by default, tile by tile at the size the models were trained on (16x16 LR / 64x64
HR, :data:`TRAIN_TILE_LR`), with overlapping tiles (stride :data:`TRAIN_TILE_STRIDE`) averaged, as
the official ResShift protocol runs its ImageNet model at its 64x64-LR training size: whole 64x64-LR
images are out of distribution for these networks (their global attention then spans 16 times the
tokens it was trained on; measured in ``reports/small-models-tiling.md``). ``chop_size`` / ``chop_stride``
override this (``null`` = whole images).
"""

from __future__ import annotations

from resshift.methods.registry import Preset, register_preset

TRAIN_TILE_LR = 16  #: LR side of the training patches (64x64 HR / 4)
TRAIN_TILE_STRIDE = 12  #: tile stride: 4 LR pixels of overlap
TILE_BATCH = 32  #: tiles per network call (a 64x64 LR image has 25); the result does not depend on it

_TILING = {"chop_size": TRAIN_TILE_LR, "chop_stride": TRAIN_TILE_STRIDE, "tile_batch": TILE_BATCH}

PRESETS: tuple[Preset, ...] = tuple(
    register_preset(p)
    for p in (
        Preset("small-resshift", "resshift-pixel", _TILING, shipped="small-resshift"),
        Preset("small-sr3", "sr3", _TILING, shipped="small-sr3"),
        Preset("small-ddnm", "ddnm", {**_TILING, "prior": "ours"}, shipped="small-prior"),
        Preset("small-ddrm", "ddrm", {**_TILING, "prior": "ours"}, shipped="small-prior"),
    )
)
NAMES = ("small-resshift", "small-sr3", "small-prior")  #: the shipped small models
