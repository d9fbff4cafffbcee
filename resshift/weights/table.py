"""The one table of every weights file the suite can use: where it comes from, its hash and licence.

Each :class:`WeightFile` row names a file by a key (``v3``, ``vqgan``, ``adm-256-uncond``,
``lpips-alex-v0.1``, ``small-resshift``, ...) with its download URL, SHA-256 (empty = not pinned
yet; ``resshift weights hash KEY`` prints the value to pin), licence and kind:

========================  ==========================================================================
kind                      files
========================  ==========================================================================
``unet``                  released ResShift denoisers (one per version of :mod:`resshift.models.configs`)
                          and SinSR's one-step distillations of them (``config`` = the ResShift version)
``autoencoder``           the VQ-f4 autoencoder shared by the ResShift versions
``prior``                 OpenAI's unconditional 256x256 ADM (guided-prior baselines)
``spandrel``              a GAN / regression SR network whose architecture spandrel detects from the file
                          (:mod:`resshift.methods.spandrel_sr`; ``config`` names the architecture)
``pipeline``              a Hugging Face model repository (LDM-SR; fetched into the Hugging Face cache)
``metric``                a metric's weights (kept in the metric weight folder, ``relpath`` = its place)
``small-model``           a small model trained by this suite and shipped inside the package
========================  ==========================================================================

:data:`FILES` is the table; :data:`CACHE_FILES` (kinds ``unet``/``autoencoder``/``prior``/``spandrel``:
the download cache, of which :data:`CHECKPOINTS` are the networks the SR methods load: the ResShift
release, SinSR and the spandrel networks), :data:`METRIC_FILES` and :data:`SHIPPED` are its views by
where the files live. A row with ``manual`` set has no direct download URL: it says where to get the
file by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from resshift.models.configs import RELEASED_VERSIONS, released_config

RELEASE_BASE_URL = "https://github.com/zsyOAOA/ResShift/releases/download/v2.0/"
MIRROR_ENV = "RESSHIFT_WEIGHTS_MIRROR"
RESSHIFT_LICENCE = "NTU S-Lab License 1.0: non-commercial use only (LICENSE file of github.com/zsyOAOA/ResShift)"
LICENCE = RESSHIFT_LICENCE  # the released ResShift files
_HF = "https://huggingface.co"
_PYIQA = f"{_HF}/chaofengc/IQA-PyTorch-Weights/resolve/main"
_PYIQA_LICENCE = "not stated per file; redistributed by pyiqa (github.com/chaofengc/IQA-PyTorch) from {}"
SINSR_BASE_URL = "https://github.com/wyf0912/SinSR/releases/download/v1.0/"  # inference.py of wyf0912/SinSR
SINSR_LICENCE = "CC BY-NC-SA 4.0: non-commercial use only (LICENSE file of github.com/wyf0912/SinSR)"
KAIR_BASE_URL = "https://github.com/cszn/KAIR/releases/download/v1.0/"
SWINIR_BASE_URL = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
SWINIR_LICENCE = "Apache-2.0 as stated by github.com/JingyunLiang/SwinIR (LICENSE not checked here)"
KINDS = ("unet", "autoencoder", "prior", "spandrel", "pipeline", "metric", "small-model")


@dataclass(frozen=True)
class WeightFile:
    """One file (or, for kind ``pipeline``, one model repository) the suite can use.

    Attributes:
        key: our name for it (registry key, ``MetricSpec.weights`` entry, method preset ...).
        kind: one of :data:`KINDS`.
        url: where it is downloaded from; ``None`` for files shipped in the package and for files
            that must be fetched by hand (``manual``).
        licence: the terms it is published under, as its publisher states them.
        sha256: lower-case hex SHA-256; empty = not pinned yet (a download then only logs its hash).
        relpath: its path inside its folder (default: the URL's file name).
        description: one line for ``resshift weights list``.
        config: the released configuration of a ResShift or SinSR file (:mod:`resshift.models.configs`),
            or the architecture spandrel must detect in a ``spandrel`` file.
        check_name_prefix: whether the hex suffix of the file name (``name-<hex>.pth``, the torch.hub
            convention) is a SHA-256 prefix enforced on fetch (torchvision enforces it itself; pyiqa
            does not check its files, so for those a mismatch is only reported).
        manual: where to get a file that has no direct download URL (nothing is then downloaded;
            :func:`resshift.weights.resolve_checkpoint` names this place and the target path).
    """

    key: str
    kind: str
    url: str | None
    licence: str
    sha256: str = ""
    relpath: str = ""
    description: str = ""
    config: str = ""
    check_name_prefix: bool = False
    manual: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"weights file {self.key!r}: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        if not self.relpath:
            if self.url is None:
                raise ValueError(f"weights file {self.key!r}: a file without URL needs a relpath")
            object.__setattr__(self, "relpath", self.url.rstrip("/").rsplit("/", 1)[-1])
        object.__setattr__(self, "sha256", (self.sha256 or "").lower())

    @property
    def filename(self) -> str:
        return Path(self.relpath).name

    @property
    def name_prefix(self) -> str | None:
        """The hex suffix of the file name (``df73285e`` in ``LPIPS_v0.1_alex-df73285e.pth``), if any."""
        stem, _, _ = self.filename.rpartition(".")
        _, dash, tail = stem.rpartition("-")
        return tail if dash and len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None

    def resolved_url(self) -> str:
        """The URL a download uses: ``$RESSHIFT_WEIGHTS_MIRROR`` + file name for ResShift release files
        and files without a direct URL (``manual``),
        the Hugging Face host replaced by ``$HF_ENDPOINT`` for Hugging Face files, else :attr:`url`."""
        mirror = os.environ.get(MIRROR_ENV)
        if self.url is None and self.manual and mirror:  # a file fetched by hand, served by the mirror
            return mirror.rstrip("/") + "/" + self.filename
        if self.url is None:
            if self.manual:
                raise ValueError(f"{self.key!r} has no direct download URL; fetch it by hand from {self.manual}")
            raise ValueError(f"{self.key!r} is shipped with the package; it has no download URL")
        if mirror and self.url.startswith(RELEASE_BASE_URL):
            return mirror.rstrip("/") + "/" + self.filename
        endpoint = os.environ.get("HF_ENDPOINT")
        if endpoint and self.url.startswith(_HF + "/"):
            return endpoint.rstrip("/") + self.url[len(_HF):]
        return self.url


_RESSHIFT_FILES = {  # version -> released file name
    "v1": "resshift_realsrx4_s15_v1.pth",
    "v2": "resshift_realsrx4_s15_v2.pth",
    "v3": "resshift_realsrx4_s4_v3.pth",
    "bicsr": "resshift_bicsrx4_s4.pth",
}
if set(_RESSHIFT_FILES) != set(RELEASED_VERSIONS):  # the version list lives in models/configs.py
    raise RuntimeError(f"released files {sorted(_RESSHIFT_FILES)} != versions {sorted(RELEASED_VERSIONS)}")

FILES: dict[str, WeightFile] = {
    f.key: f
    for f in (
        *(WeightFile(v, "unet", RELEASE_BASE_URL + _RESSHIFT_FILES[v], RESSHIFT_LICENCE,
                     description="UNet: " + released_config(v).description, config=v)
          for v in RELEASED_VERSIONS),
        WeightFile("vqgan", "autoencoder", RELEASE_BASE_URL + "autoencoder_vq_f4.pth", RESSHIFT_LICENCE,
                   description="VQ-f4 autoencoder (8192 x 3 codebook) shared by all SR versions"),
        # SinSR (Wang et al., CVPR 2024): ResShift v1's UNet distilled to one step (configs/SinSR.yaml
        # of wyf0912/SinSR: the v1 architecture and schedule). The README uses v1 for ImageNet-Test and
        # RealSet65 and v2 ("obtained by early stop") for RealSR. Decoded by the ResShift VQ-f4 above.
        WeightFile("sinsr-v1", "unet", SINSR_BASE_URL + "SinSR_v1.pth", SINSR_LICENCE, config="v1",
                   description="SinSR one-step UNet, CVPR 2024 release v1.0 (ImageNet-Test, RealSet65)"),
        WeightFile("sinsr-v2", "unet", SINSR_BASE_URL + "SinSR_v2.pth", SINSR_LICENCE, config="v1",
                   description="SinSR one-step UNet, CVPR 2024 release v1.0, early-stopped (RealSR)"),
        # GAN / regression SR networks, loaded by spandrel's architecture detection
        # (resshift.methods.spandrel_sr). ``config`` is the architecture spandrel must detect.
        WeightFile("realesrgan-x4plus", "spandrel",
                   "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
                   "MIT (LICENSE of github.com/xinntao/Real-ESRGAN at commit 4dc033d)", config="ESRGAN",
                   description="Real-ESRGAN x4plus (Wang et al., ICCVW 2021), RRDBNet, BasicSR key layout"),
        WeightFile("bsrgan", "spandrel", KAIR_BASE_URL + "BSRGAN.pth",
                   "Apache-2.0 as stated for BSRGAN (github.com/cszn/BSRGAN; LICENSE not checked here); "
                   "file from the KAIR release (MIT)", config="ESRGAN",
                   description="BSRGAN x4 (Zhang et al., ICCV 2021), RRDBNet, KAIR key layout"),
        WeightFile("esrgan", "spandrel", KAIR_BASE_URL + "ESRGAN.pth",
                   "Apache-2.0 (LICENSE of github.com/xinntao/ESRGAN); file from the KAIR release (MIT)",
                   config="ESRGAN",
                   description="ESRGAN x4 (Wang et al., ECCVW 2018), RRDBNet, as redistributed in the KAIR "
                               "v1.0 release by the BSRGAN authors (the original RRDB_ESRGAN_x4.pth is on "
                               "Google Drive, linked from github.com/xinntao/ESRGAN)"),
        WeightFile("realsr-jpeg", "spandrel", None, "no licence file in github.com/jixiaozhong/RealSR (research use)",
                   relpath="DF2K-JPEG.pth", config="ESRGAN",
                   manual="the DF2K-JPEG link of the github.com/jixiaozhong/RealSR README (Google Drive "
                          "file id 1w8QbCLM6g-MMVlIhRERtSXrP-Dh7cPhm)",
                   description="RealSR DF2K-JPEG x4 (Ji et al., CVPRW 2020), RRDBNet, ESRGAN key layout"),
        WeightFile("swinir-m-real-gan", "spandrel",
                   SWINIR_BASE_URL + "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth", SWINIR_LICENCE,
                   config="SwinIR", description="SwinIR-M real-world x4 GAN (Liang et al., ICCVW 2021)"),
        WeightFile("swinir-l-real-gan", "spandrel",
                   SWINIR_BASE_URL + "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", SWINIR_LICENCE,
                   config="SwinIR", description="SwinIR-L real-world x4 GAN (Liang et al., ICCVW 2021)"),
        WeightFile("adm-256-uncond", "prior",
                   "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
                   "MIT (github.com/openai/guided-diffusion)",
                   description="OpenAI ADM, unconditional ImageNet 256x256 (DDNM / DDRM prior)"),
        WeightFile("ldm-sr", "pipeline", f"{_HF}/CompVis/ldm-super-resolution-4x-openimages", "Apache-2.0 (model card)",
                   relpath="CompVis/ldm-super-resolution-4x-openimages",
                   description="LDM-SR x4 pipeline (diffusers; `huggingface-cli download` into the HF cache)"),
        WeightFile("lpips-alex-v0.1", "metric", f"{_PYIQA}/LPIPS_v0.1_alex-df73285e.pth",
                   _PYIQA_LICENCE.format("github.com/richzhang/PerceptualSimilarity (BSD-2-Clause)"),
                   relpath="hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth",
                   description="LPIPS linear layers, AlexNet (pyiqa lpips_arch default_model_urls['0.1_alex'])"),
        WeightFile("lpips-vgg-v0.1", "metric", f"{_PYIQA}/LPIPS_v0.1_vgg-a78928a0.pth",
                   _PYIQA_LICENCE.format("github.com/richzhang/PerceptualSimilarity (BSD-2-Clause)"),
                   relpath="hub/pyiqa/LPIPS_v0.1_vgg-a78928a0.pth",
                   description="LPIPS linear layers, VGG (pyiqa lpips_arch default_model_urls['0.1_vgg'])"),
        WeightFile("torchvision-alexnet", "metric", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                   "torchvision model weights (github.com/pytorch/vision, BSD-3-Clause)",
                   relpath="hub/checkpoints/alexnet-owt-7be5be79.pth", check_name_prefix=True,
                   description="torchvision AlexNet_Weights.IMAGENET1K_V1 (LPIPS backbone)"),
        WeightFile("torchvision-vgg16", "metric", "https://download.pytorch.org/models/vgg16-397923af.pth",
                   "torchvision model weights (github.com/pytorch/vision, BSD-3-Clause)",
                   relpath="hub/checkpoints/vgg16-397923af.pth", check_name_prefix=True,
                   description="torchvision VGG16_Weights.IMAGENET1K_V1 (LPIPS-VGG backbone)"),
        WeightFile("clip-rn50", "metric",
                   "https://openaipublic.azureedge.net/clip/models/"
                   "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
                   "MIT (github.com/openai/CLIP)",
                   sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
                   relpath="hub/clip/RN50.pt",
                   description="OpenAI CLIP RN50 (CLIP-IQA); the SHA-256 is part of the official URL"),
        WeightFile("musiq-koniq", "metric", f"{_PYIQA}/musiq_koniq_ckpt-e95806b9.pth",
                   _PYIQA_LICENCE.format("github.com/google-research/google-research/tree/master/musiq"),
                   relpath="hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth",
                   description="MUSIQ trained on KonIQ-10k (pyiqa musiq_arch default_model_urls['koniq10k'])"),
        WeightFile("niqe-params", "metric", f"{_PYIQA}/niqe_modelparameters.mat",
                   _PYIQA_LICENCE.format("the NIQE MATLAB release (live.ece.utexas.edu)"),
                   relpath="hub/pyiqa/niqe_modelparameters.mat",
                   description="NIQE model parameters (pyiqa niqe_arch; not in the pyiqa wheel)"),
        WeightFile("small-resshift", "small-model", None, "Apache-2.0 (this project)",
                   sha256="2a34b4d0444dc7b73c9aecdb117c4bde956f2ec469e7155cba26fa81d9a1b356",
                   relpath="small-resshift.safetensors",
                   description="small pixel-space ResShift trained on CPU by this suite"),
        WeightFile("small-sr3", "small-model", None, "Apache-2.0 (this project)",
                   sha256="01761743d046459c9e61287997252a45ae88248d27f994083bd68c189251405b",
                   relpath="small-sr3.safetensors",
                   description="small SR3-style conditional DDPM trained on CPU by this suite"),
        WeightFile("small-prior", "small-model", None, "Apache-2.0 (this project)",
                   sha256="c92b447b31380cc4fc496a0124133a0ad7363159f0fc7d56708fa39c38f029bd",
                   relpath="small-prior.safetensors",
                   description="small unconditional prior (DDNM / DDRM) trained on CPU by this suite"),
    )
}

#: Files of the download cache (``resshift weights fetch KEY``), by key.
CACHE_FILES: dict[str, WeightFile] = {
    k: f for k, f in FILES.items() if f.kind in ("unet", "autoencoder", "prior", "spandrel")
}
#: The networks the SR methods load (ResShift release, SinSR, spandrel networks); those with a
#: download URL are what ``resshift weights fetch`` gets without keys.
CHECKPOINTS: dict[str, WeightFile] = {
    k: f for k, f in CACHE_FILES.items() if f.kind in ("unet", "autoencoder", "spandrel")
}
#: Files of the metric weight folder, by key (referenced by ``MetricSpec.weights``).
METRIC_FILES: dict[str, WeightFile] = {k: f for k, f in FILES.items() if f.kind == "metric"}
#: Files shipped inside the package, by key.
SHIPPED: dict[str, WeightFile] = {k: f for k, f in FILES.items() if f.kind == "small-model"}


def _lookup(table: dict[str, WeightFile], key: str | WeightFile, what: str) -> WeightFile:
    if isinstance(key, WeightFile):
        return key
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"unknown {what} {key!r}; known: {', '.join(table)}") from None


def get_entry(key: str | WeightFile) -> WeightFile:
    """The download-cache entry (checkpoint) ``key``; entries pass through unchanged."""
    if isinstance(key, str) and key in CHECKPOINTS:  # the release view first (tests may patch it)
        return CHECKPOINTS[key]
    return _lookup(CACHE_FILES, key, "checkpoint")


def get_metric_file(key: str | WeightFile) -> WeightFile:
    """The metric weights entry ``key``."""
    return _lookup(METRIC_FILES, key, "metric weight file")


def with_hash(key: str | WeightFile, sha256: str) -> WeightFile:
    """A copy of an entry with a pinned hash."""
    return replace(get_entry(key), sha256=sha256.lower())
