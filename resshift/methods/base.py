"""The interface every SR method implements (ResShift, SR3-style, LDM-SR, guided priors, bicubic)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from resshift.methods.params import MethodParams, resolve_params


class SRMethod(ABC):
    """A super-resolution method.

    Attributes (class or instance):
        name: registry name, e.g. ``"resshift-v3"``.
        scale: the upscaling factor (4 for every method in this suite).
        nfe: network function evaluations per image (0 for classic interpolation).
        assumes_operator: the degradation the method assumes is known (``"bicubic"``,
            ``"avgpool"``), or ``None`` for blind methods.
        preferred_tile: LR tile side the method prefers for large inputs, or ``None`` (whole image).
        stochastic: whether outputs depend on the random generators.
        measures_time: ``False`` for methods whose outputs were made elsewhere: the runner then
            records no latency and reports timing as n/a, never 0.
        max_batch: the most images the runner may pass in one call (``None``: no limit).
        Params: the method's parameter dataclass (:mod:`resshift.methods.params`); an instance keeps
            the resolved one as ``params``.
        preset: facts of the preset the method was built from (``name``, shipped weights), if any.
    """

    Params: ClassVar[type[MethodParams]] = MethodParams
    params: MethodParams
    preset: Mapping[str, Any] | None = None

    name: str = "method"
    scale: int = 4
    nfe: int = 0
    assumes_operator: str | None = None
    preferred_tile: int | None = None
    stochastic: bool = False
    measures_time: bool = True
    max_batch: int | None = None

    @abstractmethod
    def upscale(self, lr: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Super-resolve a batch.

        Args:
            lr: ``(B, 3, h, w)`` float RGB in ``[0, 1]`` on the method's device.
            generators: one ``torch.Generator`` per image (on the method's device), the only source of
                randomness; ``None`` only for deterministic methods.

        Returns:
            ``(B, 3, scale*h, scale*w)`` float32 RGB in ``[0, 1]``.
        """

    def upscale_named(self, names: Sequence[str], lr: torch.Tensor,
                      generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """:meth:`upscale` for a batch whose image names are known (``names[i]`` is ``lr[i]``'s).

        The runner calls this; methods that read per-image resources (outputs made elsewhere)
        override it, every other method ignores the names.
        """
        return self.upscale(lr, generators)

    def expect_images(self, names: Sequence[str], run_names: Sequence[str] | None = None) -> None:
        """Told once, before any call: every image name of the data set, and those this run processes
        (after ``select``/``limit``/sharding; default: all). Default: ignored."""
        return None

    def image_facts(self, name: str) -> dict[str, object]:
        """Per-image provenance for the SR row of ``name`` (default: none)."""
        return {}

    def output_notes(self, name: str) -> list[str]:
        """Notes on how the output of ``name`` was obtained, for its row (default: none; a method that reads its
        outputs from files gives the reader's notes: alpha dropped, EXIF orientation applied, ...)."""
        return []

    def resolve_params(self, params: MethodParams | None, config: Mapping[str, Any]) -> MethodParams:
        """``params`` (an instance of :attr:`Params` or a subclass), else :attr:`Params` filled from the
        keyword ``config``; unknown keys raise :class:`~resshift.methods.params.UnknownParameterError`."""
        return resolve_params(self.Params, self.name, params, config)

    def describe(self) -> dict[str, object]:
        """Facts for the provenance record and the report: identity, every resolved parameter
        (``self.params``), the preset it came from; subclasses add checkpoint hashes and the like."""
        info: dict[str, object] = {
            "name": self.name,
            "scale": self.scale,
            "nfe": self.nfe,
            "assumes_operator": self.assumes_operator,
            "stochastic": self.stochastic,
        }
        if getattr(self, "params", None) is not None:
            info.update(self.params.describe())
        if self.preset:
            info.update(self.preset)
        return info
