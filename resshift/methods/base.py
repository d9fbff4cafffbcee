"""The interface every SR method implements (ResShift, SR3-style, LDM-SR, guided priors, bicubic)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch


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
    """

    name: str = "method"
    scale: int = 4
    nfe: int = 0
    assumes_operator: str | None = None
    preferred_tile: int | None = None
    stochastic: bool = False

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

    def describe(self) -> dict[str, object]:
        """Facts for the provenance record and the report (extend in subclasses: checkpoint hash...)."""
        return {
            "name": self.name,
            "scale": self.scale,
            "nfe": self.nfe,
            "assumes_operator": self.assumes_operator,
            "stochastic": self.stochastic,
        }
