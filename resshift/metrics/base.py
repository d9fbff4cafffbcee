"""The interface every metric implements, and the input checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from resshift.metrics.registry import MetricSpec

# Slack on the [0, 1] range check (float rounding of already-clamped images).
RANGE_TOLERANCE = 1e-6


class MetricInputError(ValueError):
    """Images handed to a metric do not follow the input convention. The message says what is wrong."""


def check_image_batch(x: torch.Tensor, what: str) -> torch.Tensor:
    """Validate a ``(B, 3|1, H, W)`` image batch in ``[0, 1]``; return it as float32 RGB.

    ``uint8`` tensors are divided by 255; half-precision tensors are promoted to float32; one-channel
    (grayscale) batches are replicated to three channels. Values outside ``[0, 1]`` raise
    :class:`MetricInputError` (with a hint when they look like ``[-1, 1]`` tensors).
    """
    if not isinstance(x, torch.Tensor):
        raise MetricInputError(f"{what}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise MetricInputError(f"{what}: expected shape (B, 3, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise MetricInputError(f"{what}: empty batch or image, shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
    else:
        raise MetricInputError(f"{what}: expected float in [0, 1] or uint8, got dtype {x.dtype}")
    lo_t, hi_t = torch.aminmax(x)  # one pass; NaN propagates into both
    lo, hi = float(lo_t), float(hi_t)
    if lo != lo or hi != hi:
        raise MetricInputError(f"{what}: contains NaN values")
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        looks_signed = -1.0 - 1e-3 <= lo < -RANGE_TOLERANCE
        hint = " (looks like [-1, 1]: pass (x + 1) / 2)" if looks_signed else ""
        raise MetricInputError(f"{what}: values must lie in [0, 1], got min {lo:.4g}, max {hi:.4g}{hint}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(0.0, 1.0) if (lo < 0.0 or hi > 1.0) else x


class Metric(ABC):
    """A built metric: ``compute(sr, hr)`` scores a batch, one float32 value per image.

    Subclasses implement :meth:`_compute` on validated float32 ``(B, 3, H, W)`` tensors already on
    :attr:`device`.
    """

    def __init__(self, spec: MetricSpec, device: str | torch.device = "cpu") -> None:
        self.spec = spec
        self.device = torch.device(device)

    @property
    def name(self) -> str:
        return self.spec.name

    def compute(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Score a batch.

        Args:
            sr: ``(B, 3, H, W)`` RGB in ``[0, 1]`` (float or uint8; one channel = grayscale).
            hr: the reference batch of the same shape for full-reference metrics; the LR input
                batch (any size) for LR-mode metrics; ignored by no-reference metrics.

        Returns:
            ``(B,)`` float32 tensor on the CPU.
        """
        sr = check_image_batch(sr, f"{self.name}: sr").to(self.device)
        ref = None
        if self.spec.full_reference:
            if hr is None:
                raise MetricInputError(f"{self.name}: full-reference metric needs the hr batch")
            ref = check_image_batch(hr, f"{self.name}: hr").to(self.device)
            if ref.shape != sr.shape:
                raise MetricInputError(
                    f"{self.name}: sr and hr shapes differ: {tuple(sr.shape)} vs {tuple(ref.shape)}"
                )
        elif self.spec.mode == "LR":
            if hr is None:
                raise MetricInputError(f"{self.name}: LR-mode metric needs the LR input batch")
            ref = check_image_batch(hr, f"{self.name}: lr").to(self.device)
            if ref.shape[:2] != sr.shape[:2]:
                raise MetricInputError(
                    f"{self.name}: sr and lr batches differ: {tuple(sr.shape)} vs {tuple(ref.shape)}"
                )
        # float32 always: an autocast region around the caller must not turn metrics into fp16.
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            out = self._compute(sr, ref)
        out = out.detach().to(torch.float32).reshape(-1).cpu()
        if out.shape[0] != sr.shape[0]:
            raise RuntimeError(
                f"{self.name}: backend returned {out.shape[0]} scores for {sr.shape[0]} images"
            )
        return out

    @abstractmethod
    def _compute(self, sr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
        """Scores of validated inputs, shape ``(B,)`` or anything that reshapes to it."""

    def describe(self) -> dict[str, object]:
        """Facts for the provenance record (spec, backend version, device)."""
        rec = self.spec.as_record()
        rec["device"] = str(self.device)
        return rec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.version}, device={self.device})"


class PaperYMetric(Metric):
    """PSNR / SSIM computed here (:mod:`resshift.metrics.paper_y`), Y or RGB per the spec options."""

    def _compute(self, sr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
        from resshift.metrics import paper_y

        assert hr is not None
        opts = self.spec.option_dict
        statistic = opts.get("statistic")
        if statistic not in ("psnr", "ssim"):
            raise ValueError(f"{self.name}: spec option 'statistic' must be psnr or ssim, got {statistic!r}")
        y_channel = bool(opts.get("y_channel", True))
        border = int(opts.get("border", 0))
        if statistic == "psnr":
            round_y = bool(opts.get("round_y", True))
            return paper_y.psnr(sr, hr, y_channel=y_channel, border=border, round_y=round_y)
        clamp_cs = bool(opts.get("clamp_cs", False))
        return paper_y.ssim(sr, hr, y_channel=y_channel, border=border, clamp_cs=clamp_cs)
