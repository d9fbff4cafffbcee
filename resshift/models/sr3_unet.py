"""Our SR3-style denoiser: an ADM-style UNet conditioned on a *continuous* noise level.

SR3 (Saharia et al.) concatenates the bicubic-upsampled LR image with the noisy HR image (6 input
channels) and conditions on the noise level ``gamma = sqrt(alpha_bar)`` rather than on a step index
(as WaveGrad does), so one trained model samples with any number of steps. The same class with
``in_channels=3`` is an unconditional prior for the guided baselines.

The backbone is :class:`resshift.models.adm_unet.ADMUNet` (BigGAN-style ResBlocks with scale/shift
conditioning, attention at low resolution); the level enters the sinusoidal embedding as
``level_scale * gamma`` (``gamma`` in ``[0, 1]``).

``patch_size = p > 1`` runs the UNet on ``p x p`` pixel-unshuffled input (``C p^2`` channels at
``1/p`` resolution) and pixel-shuffles the output back: the small CPU-trained models use ``p = 2``,
which makes a step about four times cheaper at the same width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from resshift.models.adm_unet import ADMUNet

CONDITIONINGS = ("bicubic-concat", "none")


class SR3UNet(ADMUNet):
    """``forward(x [B,C,H,W], gamma [B]) -> eps [B, out_channels, H, W]`` with ``gamma = sqrt(alpha_bar)``.

    Defaults are a compact 64->256 model (~40M parameters); tests use far smaller ones.
    """

    def __init__(
        self,
        in_channels: int = 6,
        out_channels: int = 3,
        model_channels: int = 64,
        channel_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_ds: Sequence[int] = (8,),
        num_head_channels: int = 64,
        dropout: float = 0.0,
        level_scale: float = 1000.0,
        patch_size: int = 1,
    ) -> None:
        if patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}")
        super().__init__(
            in_channels=in_channels * patch_size**2,
            model_channels=model_channels,
            out_channels=out_channels * patch_size**2,
            num_res_blocks=num_res_blocks,
            attention_ds=attention_ds,
            channel_mult=channel_mult,
            num_head_channels=num_head_channels,
            dropout=dropout,
            use_scale_shift_norm=True,
            resblock_updown=True,
        )
        self.level_scale = float(level_scale)
        self.config = {
            k: v for k, v in self.config.items() if k not in ("use_scale_shift_norm", "resblock_updown")
        }
        self.config["level_scale"] = self.level_scale
        self.patch_size = int(patch_size)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.config.update(in_channels=in_channels, out_channels=out_channels)
        if self.patch_size != 1:  # older checkpoints have no key: they mean 1
            self.config["patch_size"] = self.patch_size

    @property
    def size_multiple(self) -> int:
        """Spatial sides must be multiples of this."""
        return super().size_multiple * self.patch_size

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        p = self.patch_size
        if p == 1:
            return super().forward(x, gamma.float() * self.level_scale)
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise ValueError(f"input {tuple(x.shape[-2:])} is not a multiple of {self.size_multiple}")
        out = super().forward(F.pixel_unshuffle(x, p), gamma.float() * self.level_scale)
        return F.pixel_shuffle(out, p)
