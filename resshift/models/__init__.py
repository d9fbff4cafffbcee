"""Networks only (no sampling logic): ResShift's Swin-UNet denoiser and the VQ-f4 autoencoder.

The constructor arguments of the released models are data in :mod:`resshift.models.configs`.
"""

from resshift.models.swin_unet import UNetModelSwin
from resshift.models.vq_f4 import VQModelTorch

__all__ = ["UNetModelSwin", "VQModelTorch"]
