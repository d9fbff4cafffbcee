"""Pixel-space ResShift for small models: the ResShift chain with the identity as "autoencoder".

The chain, schedule, sampler and tiling are those of the latent method (:class:`ResShiftSR`); only
the space changes. x0 is the HR image in ``[-1, 1]``, the chain's endpoint y0 is the PyTorch-bicubic
x4 upsampling of the LR (exactly what :meth:`ResShiftSR.encode` computes, with an identity encoder),
and decoding is the identity. The denoiser is an :class:`~resshift.models.sr3_unet.SR3UNet` with
6 input channels ``[x_t / sqrt(kappa^2 eta_t + 1), bicubic_x4(lq)]`` that receives the raw integer
step index (``level_scale = 1``), as the Swin-UNet does. As in the official code's pixel branch
(``clip_denoised`` when there is no autoencoder) the x0 prediction is clamped to ``[-1, 1]`` while
sampling; training uses the raw prediction. With ``residual`` the network's output is added to
the bicubic upsampling of the LR (x0 = bicubic_x4(lq) + net(...)): a global skip connection, as
many SR networks have; it only reparametrises the x0-predictor, the chain is unchanged, and it
lets a briefly trained network start from the bicubic image instead of from zero.

Checkpoint: :data:`resshift.weights.formats.PIXEL_RESSHIFT_FORMAT` (save / load there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resshift.diffusion.schedule import ResShiftSchedule
from resshift.methods.params import PixelResShiftParams, resolve_params
from resshift.methods.registry import register_method
from resshift.methods.resshift_method import ResShiftSR
from resshift.models.pixel_resshift import SCALE, IdentityAutoencoder, PixelResShiftNet
from resshift.models.sr3_unet import SR3UNet
from resshift.weights.formats import load_pixel_checkpoint


def build_pixel_resshift(net: SR3UNet, schedule: ResShiftSchedule, *, name: str = "resshift-pixel",
                         residual: bool = False, provenance: dict[str, object] | None = None,
                         params: PixelResShiftParams | None = None, **config: Any) -> ResShiftSR:
    """A :class:`ResShiftSR` on pixels: identity autoencoder, clamped x0, LR padded to the net's multiple.

    ``params`` / ``config``: :class:`~resshift.methods.params.PixelResShiftParams`.
    """
    params = resolve_params(PixelResShiftParams, name, params, config)
    denoiser = PixelResShiftNet(net, clip_x0=True, residual=residual)
    return ResShiftSR(
        denoiser,
        IdentityAutoencoder(),
        schedule,
        name=name,
        padding_offset=max(1, -(-net.size_multiple // SCALE)),
        provenance=provenance,
        params=params,
    )


@register_method("resshift-pixel", PixelResShiftParams)
def _build(params: PixelResShiftParams) -> ResShiftSR:
    if not params.checkpoint:
        raise FileNotFoundError("resshift-pixel needs method.params.checkpoint=PATH (a resshift-pixel "
                                "safetensors file, e.g. one written by `python -m resshift.train.app`)")
    from resshift.provenance import file_sha256

    net, schedule, config = load_pixel_checkpoint(Path(params.checkpoint).expanduser())
    residual = bool(config.get("residual", False))
    provenance = {"checkpoint_sha256": file_sha256(params.checkpoint), "space": "pixel", "residual": residual}
    return build_pixel_resshift(net, schedule, residual=residual, provenance=provenance, params=params)
