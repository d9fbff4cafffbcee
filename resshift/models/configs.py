"""The released ResShift configurations as data: network ``params`` and diffusion settings.

Values are those of the official YAML configs (``model.params``, ``autoencoder.params``,
``diffusion.params``) at commit 3ce1d81 of zsyOAOA/ResShift; the keyword names are the official
ones, so ``UNetModelSwin(**UNET_PARAMS)`` and ``VQModelTorch(**AUTOENCODER_PARAMS)`` build the
released architectures. The four SR versions share one UNet architecture and one autoencoder and
differ only in weights and in the diffusion schedule (T = 15 for v1/v2, T = 4 for v3/bicsr).

This module is the one home of these numbers; the schedule formula itself lives with the diffusion
code.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

# model.params of configs/realsr_swinunet_realesrgan256{,_journal}.yaml and bicx4_swinunet_lpips.yaml
UNET_PARAMS: dict = {
    "image_size": 64,
    "in_channels": 3,
    "model_channels": 160,
    "out_channels": 3,
    "attention_resolutions": [64, 32, 16, 8],
    "dropout": 0,
    "channel_mult": [1, 2, 2, 4],
    "num_res_blocks": [2, 2, 2, 2],
    "conv_resample": True,
    "dims": 2,
    "use_fp16": False,
    "num_head_channels": 32,
    "use_scale_shift_norm": True,
    "resblock_updown": False,
    "swin_depth": 2,
    "swin_embed_dim": 192,
    "window_size": 8,
    "mlp_ratio": 4,
    "cond_lq": True,
    "lq_size": 64,
}

# autoencoder.params (identical in all SR configs); padding_mode is accepted and ignored upstream.
AUTOENCODER_PARAMS: dict = {
    "embed_dim": 3,
    "n_embed": 8192,
    "ddconfig": {
        "double_z": False,
        "z_channels": 3,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 128,
        "ch_mult": [1, 2, 4],
        "num_res_blocks": 2,
        "attn_resolutions": [],
        "dropout": 0.0,
        "padding_mode": "zeros",
    },
}


@dataclass(frozen=True)
class DiffusionConfig:
    """``diffusion.params`` of a released config (names as upstream, ``steps`` is T)."""

    sf: int
    schedule_name: str
    power: float  # schedule_kwargs.power
    etas_end: float
    steps: int
    min_noise_level: float
    kappa: float
    weighted_mse: bool
    predict_type: str
    timestep_respacing: int | None
    scale_factor: float
    normalize_input: bool
    latent_flag: bool

    def as_params(self) -> dict:
        """The dict in the official YAML layout (``schedule_kwargs: {power: ...}``)."""
        d = asdict(self)
        d["schedule_kwargs"] = {"power": d.pop("power")}
        return d


def _diffusion(steps: int, min_noise_level: float) -> DiffusionConfig:
    return DiffusionConfig(
        sf=4, schedule_name="exponential", power=0.3, etas_end=0.99, steps=steps,
        min_noise_level=min_noise_level, kappa=2.0, weighted_mse=False, predict_type="xstart",
        timestep_respacing=None, scale_factor=1.0, normalize_input=True, latent_flag=True,
    )


@dataclass(frozen=True)
class ReleasedConfig:
    """One released SR model: where its config comes from and what it contains."""

    name: str
    config_file: str  # path inside the official repository
    diffusion: DiffusionConfig
    description: str

    @property
    def unet_params(self) -> dict:
        """A fresh copy of the UNet constructor arguments."""
        return copy.deepcopy(UNET_PARAMS)

    @property
    def autoencoder_params(self) -> dict:
        """A fresh copy of the VQ-f4 constructor arguments."""
        return copy.deepcopy(AUTOENCODER_PARAMS)

    @property
    def padding_offset(self) -> int:
        """The LR is reflect-padded to multiples of this (``model.params.lq_size`` upstream)."""
        return int(UNET_PARAMS["lq_size"])


RELEASED_CONFIGS: dict[str, ReleasedConfig] = {
    "v1": ReleasedConfig(
        "v1", "configs/realsr_swinunet_realesrgan256.yaml", _diffusion(15, 0.04),
        "real-world x4, NeurIPS 2023 model, 15 steps, 300k iterations",
    ),
    "v2": ReleasedConfig(
        "v2", "configs/realsr_swinunet_realesrgan256.yaml", _diffusion(15, 0.04),
        "real-world x4, NeurIPS 2023 model, 15 steps, 500k iterations",
    ),
    "v3": ReleasedConfig(
        "v3", "configs/realsr_swinunet_realesrgan256_journal.yaml", _diffusion(4, 0.2),
        "real-world x4, TPAMI 2024 (journal) model, 4 steps",
    ),
    "bicsr": ReleasedConfig(
        "bicsr", "configs/bicx4_swinunet_lpips.yaml", _diffusion(4, 0.2),
        "MATLAB-bicubic x4 (journal), 4 steps",
    ),
}

#: The released SR versions, in release order: the one list every other module reads.
RELEASED_VERSIONS: tuple[str, ...] = tuple(RELEASED_CONFIGS)


def released_config(version: str) -> ReleasedConfig:
    """The config of a released SR version (``v1``, ``v2``, ``v3``, ``bicsr``)."""
    try:
        return RELEASED_CONFIGS[version]
    except KeyError:
        known = ", ".join(RELEASED_CONFIGS)
        raise KeyError(f"unknown ResShift version {version!r}; known: {known}") from None
