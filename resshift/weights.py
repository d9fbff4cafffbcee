"""Released ResShift checkpoints: registry, download cache, offline lookup and safe loading.

The registry (:data:`CHECKPOINTS`) names every released file with its URL, the configuration it
belongs to, its licence and a SHA-256 field. The hashes of the released files are not recorded yet
(they could not be downloaded where this was written): the field is empty until a maintainer pins
it -- ``resshift weights hash KEY`` prints the value. A pinned hash (in the registry or passed as
``sha256=``) is checked every time a file is resolved.

Lookup order of :func:`resolve_checkpoint`: the ``offline_dir`` argument, the folders in
``$RESSHIFT_WEIGHTS_DIR`` (``os.pathsep``-separated), then the download cache
(``cache_dir`` or ``resshift.paths.cache_dir()/weights``). A file found nowhere is downloaded into the
cache unless ``download=False`` or ``$RESSHIFT_OFFLINE=1``; ``$RESSHIFT_WEIGHTS_MIRROR`` replaces the
release base URL.

Files are read with ``torch.load(weights_only=True)`` (``.pth``/``.pt``/``.ckpt``/``.bin``) or
safetensors; ``state_dict``/``params_ema``-style wrappers and ``module.`` / ``_orig_mod.`` prefixes
(DDP, ``torch.compile``) are removed. Loading into a network is strict: missing, unexpected or
mis-shaped keys raise :class:`CheckpointMismatchError` naming the file and the keys. The Swin
``attn_mask`` / ``relative_position_index`` buffers are derived from the architecture and may be
absent from a file.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from resshift.models.configs import AUTOENCODER_PARAMS, released_config
from resshift.models.swin_unet import UNetModelSwin
from resshift.models.vq_f4 import VQModelTorch
from resshift.paths import cache_dir as _cache_root
from resshift.provenance import file_sha256

log = logging.getLogger(__name__)

RELEASE_BASE_URL = "https://github.com/zsyOAOA/ResShift/releases/download/v2.0/"
WEIGHTS_DIR_ENV = "RESSHIFT_WEIGHTS_DIR"
MIRROR_ENV = "RESSHIFT_WEIGHTS_MIRROR"
OFFLINE_ENV = "RESSHIFT_OFFLINE"
LICENCE = "NTU S-Lab License 1.0: non-commercial use only (LICENSE file of github.com/zsyOAOA/ResShift)"
SINSR_BASE_URL = "https://github.com/wyf0912/SinSR/releases/download/v1.0/"  # inference.py of wyf0912/SinSR
SINSR_LICENCE = "CC BY-NC-SA 4.0: non-commercial use only (LICENSE file of github.com/wyf0912/SinSR)"
KAIR_BASE_URL = "https://github.com/cszn/KAIR/releases/download/v1.0/"
SWINIR_BASE_URL = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/"
SWINIR_LICENCE = "Apache-2.0 as stated by github.com/JingyunLiang/SwinIR (LICENSE not checked here)"

_WRAPPER_KEYS = ("state_dict", "params_ema", "params", "model", "ema")
_PREFIXES = ("module.", "_orig_mod.")
_DERIVED_BUFFERS = (".attn_mask", ".relative_position_index")


class WeightsError(Exception):
    """Base class of the errors raised here."""


class CheckpointNotFoundError(WeightsError, FileNotFoundError):
    """A checkpoint is not available locally and may not be downloaded."""


class CheckpointDownloadError(WeightsError, RuntimeError):
    """Downloading a checkpoint failed."""


class ChecksumMismatchError(WeightsError, ValueError):
    """A file's SHA-256 differs from the pinned value."""


class CheckpointFormatError(WeightsError, ValueError):
    """A file is not a readable state dict."""


class CheckpointMismatchError(WeightsError, ValueError):
    """A state dict does not fit the network (missing / unexpected / mis-shaped keys)."""


@dataclass(frozen=True)
class CheckpointEntry:
    """One released file."""

    key: str
    filename: str
    kind: str  # "unet", "autoencoder" or "spandrel" (a GAN/regression network loaded by spandrel)
    config: str  # released config name (resshift.models.configs), "autoencoder", or spandrel's architecture id
    description: str
    sha256: str = ""  # lower-case hex; empty = not pinned yet
    base_url: str = RELEASE_BASE_URL
    licence: str = LICENCE
    manual: str = ""  # where to get a file that has no direct download URL (then nothing is downloaded)

    @property
    def url(self) -> str:
        """The official download URL (empty for files that must be fetched by hand, see ``manual``)."""
        return self.base_url + self.filename if self.base_url else ""


CHECKPOINTS: dict[str, CheckpointEntry] = {
    e.key: e
    for e in (
        CheckpointEntry("v1", "resshift_realsrx4_s15_v1.pth", "unet", "v1",
                        "real-world x4 UNet, NeurIPS 2023, 15 steps, 300k iterations"),
        CheckpointEntry("v2", "resshift_realsrx4_s15_v2.pth", "unet", "v2",
                        "real-world x4 UNet, NeurIPS 2023, 15 steps, 500k iterations"),
        CheckpointEntry("v3", "resshift_realsrx4_s4_v3.pth", "unet", "v3",
                        "real-world x4 UNet, TPAMI 2024 (journal), 4 steps"),
        CheckpointEntry("bicsr", "resshift_bicsrx4_s4.pth", "unet", "bicsr",
                        "MATLAB-bicubic x4 UNet (journal), 4 steps"),
        CheckpointEntry("vqgan", "autoencoder_vq_f4.pth", "autoencoder", "autoencoder",
                        "VQ-f4 autoencoder (8192 x 3 codebook) shared by all SR versions"),
        # SinSR (Wang et al., CVPR 2024): ResShift v1's UNet distilled to one step (configs/SinSR.yaml
        # of wyf0912/SinSR: the v1 architecture and schedule). The README uses v1 for ImageNet-Test and
        # RealSet65 and v2 ("obtained by early stop") for RealSR. Decoded by the ResShift VQ-f4 above.
        CheckpointEntry("sinsr-v1", "SinSR_v1.pth", "unet", "v1",
                        "SinSR one-step UNet, CVPR 2024 release v1.0 (ImageNet-Test, RealSet65)",
                        base_url=SINSR_BASE_URL, licence=SINSR_LICENCE),
        CheckpointEntry("sinsr-v2", "SinSR_v2.pth", "unet", "v1",
                        "SinSR one-step UNet, CVPR 2024 release v1.0, early-stopped (RealSR)",
                        base_url=SINSR_BASE_URL, licence=SINSR_LICENCE),
        # GAN / regression SR networks, loaded by spandrel's architecture detection
        # (resshift.methods.spandrel_sr). ``config`` is the architecture spandrel must detect.
        CheckpointEntry("realesrgan-x4plus", "RealESRGAN_x4plus.pth", "spandrel", "ESRGAN",
                        "Real-ESRGAN x4plus (Wang et al., ICCVW 2021), RRDBNet, BasicSR key layout",
                        base_url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/",
                        licence="MIT (LICENSE of github.com/xinntao/Real-ESRGAN at commit 4dc033d)"),
        CheckpointEntry("bsrgan", "BSRGAN.pth", "spandrel", "ESRGAN",
                        "BSRGAN x4 (Zhang et al., ICCV 2021), RRDBNet, KAIR key layout",
                        base_url=KAIR_BASE_URL,
                        licence="Apache-2.0 as stated for BSRGAN (github.com/cszn/BSRGAN; LICENSE not checked here); "
                                "file from the KAIR release (MIT)"),
        CheckpointEntry("esrgan", "ESRGAN.pth", "spandrel", "ESRGAN",
                        "ESRGAN x4 (Wang et al., ECCVW 2018), RRDBNet, as redistributed in the KAIR v1.0 "
                        "release by the BSRGAN authors (the original RRDB_ESRGAN_x4.pth is on Google Drive, "
                        "linked from github.com/xinntao/ESRGAN)",
                        base_url=KAIR_BASE_URL,
                        licence="Apache-2.0 (LICENSE of github.com/xinntao/ESRGAN); file from the KAIR release (MIT)"),
        CheckpointEntry("realsr-jpeg", "DF2K-JPEG.pth", "spandrel", "ESRGAN",
                        "RealSR DF2K-JPEG x4 (Ji et al., CVPRW 2020), RRDBNet, ESRGAN key layout",
                        base_url="", licence="no licence file in github.com/jixiaozhong/RealSR (research use)",
                        manual="the DF2K-JPEG link of the github.com/jixiaozhong/RealSR README (Google Drive "
                               "file id 1w8QbCLM6g-MMVlIhRERtSXrP-Dh7cPhm)"),
        CheckpointEntry("swinir-m-real-gan", "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth", "spandrel",
                        "SwinIR", "SwinIR-M real-world x4 GAN (Liang et al., ICCVW 2021)",
                        base_url=SWINIR_BASE_URL, licence=SWINIR_LICENCE),
        CheckpointEntry("swinir-l-real-gan", "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN.pth", "spandrel",
                        "SwinIR", "SwinIR-L real-world x4 GAN (Liang et al., ICCVW 2021)",
                        base_url=SWINIR_BASE_URL, licence=SWINIR_LICENCE),
    )
}


def get_entry(key: str | CheckpointEntry) -> CheckpointEntry:
    """The registry entry for ``key`` (entries pass through unchanged)."""
    if isinstance(key, CheckpointEntry):
        return key
    try:
        return CHECKPOINTS[key]
    except KeyError:
        raise KeyError(f"unknown checkpoint {key!r}; known: {', '.join(CHECKPOINTS)}") from None


def source_url(entry: CheckpointEntry) -> str:
    """Where a download fetches ``entry`` from: ``$RESSHIFT_WEIGHTS_MIRROR`` + filename, else the URL."""
    mirror = os.environ.get(MIRROR_ENV)
    return mirror.rstrip("/") + "/" + entry.filename if mirror else entry.url


def weights_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The download cache for weights: ``cache_dir`` or ``resshift.paths.cache_dir()/weights``."""
    return Path(cache_dir).expanduser() if cache_dir else _cache_root() / "weights"


def search_dirs(offline_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a checkpoint, in order."""
    dirs = [Path(offline_dir).expanduser()] if offline_dir else []
    dirs += [Path(p).expanduser() for p in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append(weights_cache_dir(cache_dir))
    return dirs


def _file_hash(path: Path) -> str:
    """SHA-256 of ``path`` (cached per path, size and mtime within the process)."""
    return file_sha256(path)


def verify_checksum(path: str | os.PathLike, expected: str, what: str = "") -> str:
    """Return the file's SHA-256; raise :class:`ChecksumMismatchError` if ``expected`` is set and differs."""
    path = Path(path)
    actual = _file_hash(path)
    if expected and actual != expected.lower():
        label = f" ({what})" if what else ""
        raise ChecksumMismatchError(
            f"{path}{label}: SHA-256 mismatch: expected {expected.lower()}, got {actual}. "
            "The file is corrupt or not the released one; delete it and fetch it again."
        )
    return actual


def find_local(key: str | CheckpointEntry, offline_dir: str | os.PathLike | None = None,
               cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The first existing copy of the checkpoint in :func:`search_dirs`, or ``None``."""
    entry = get_entry(key)
    for folder in search_dirs(offline_dir, cache_dir):
        candidate = folder / entry.filename
        if candidate.is_file():
            return candidate
    return None


def _offline_forced() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_checkpoint(
    key: str | CheckpointEntry,
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    download: bool = True,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Local path of a released checkpoint, downloading it into the cache if needed.

    ``sha256`` overrides the registry's pinned hash. A pinned hash is verified for local files
    as well as downloads.
    """
    entry = get_entry(key)
    expected = (sha256 if sha256 is not None else entry.sha256).lower()
    local = find_local(entry, offline_dir, cache_dir)
    if local is not None:
        verify_checksum(local, expected, entry.key)
        return local
    target = weights_cache_dir(cache_dir) / entry.filename
    if entry.manual and not os.environ.get(MIRROR_ENV):
        raise CheckpointNotFoundError(
            f"checkpoint {entry.key!r} ({entry.filename}) not found and it has no direct download URL: "
            f"fetch it from {entry.manual} and save it as {target} (or into a folder listed in ${WEIGHTS_DIR_ENV})."
        )
    if not download or _offline_forced():
        looked = ", ".join(str(d) for d in search_dirs(offline_dir, cache_dir))
        raise CheckpointNotFoundError(
            f"checkpoint {entry.key!r} ({entry.filename}) not found (looked in: {looked}) and "
            f"downloading is disabled. Download {source_url(entry)} and save it as {target} "
            f"(or into a folder listed in ${WEIGHTS_DIR_ENV})."
        )
    return download_checkpoint(entry, target.parent, expected, progress)


def download_checkpoint(key: str | CheckpointEntry, dest_dir: str | os.PathLike,
                        sha256: str | None = None, progress: bool = True) -> Path:
    """Download a checkpoint into ``dest_dir`` (atomically, verified against the pinned hash)."""
    entry = get_entry(key)
    expected = (sha256 if sha256 is not None else entry.sha256).lower()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / entry.filename
    partial = dest_dir / f".{entry.filename}.partial"
    url = source_url(entry)
    log.info("downloading %s -> %s", url, target)
    try:
        torch.hub.download_url_to_file(url, str(partial), hash_prefix=None, progress=progress)
    except Exception as exc:  # urllib errors, interrupted transfers, disk full ...
        partial.unlink(missing_ok=True)
        raise CheckpointDownloadError(
            f"could not download checkpoint {entry.key!r} from {url}: {exc}. "
            f"Download it by hand and save it as {target}."
        ) from exc
    actual = file_sha256(partial)
    if expected and actual != expected:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"{url}: downloaded file has SHA-256 {actual}, expected {expected}; it was discarded "
            f"(would have been {target})."
        )
    os.replace(partial, target)
    if not expected:
        log.warning("%s has no pinned SHA-256; downloaded file hash is %s", entry.key, actual)
    return target


# ----------------------------------------------------------------------------------------- loading


def _strip_prefixes(key: str) -> str:
    key = key.replace("._orig_mod.", ".")
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def normalize_state_dict(obj: object, source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Unwrap ``state_dict``/``params_ema``-style containers and strip ``module.``/``_orig_mod.``."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise CheckpointFormatError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        wrapper = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)][:5]
            raise CheckpointFormatError(
                f"{source}: not a state dict (non-tensor entries {bad}; no wrapper among {_WRAPPER_KEYS})"
            )
        obj = obj[wrapper]
    else:
        raise CheckpointFormatError(f"{source}: wrappers nested too deeply")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        clean = _strip_prefixes(str(key))
        if clean in out:
            raise CheckpointFormatError(f"{source}: keys collide after removing prefixes: {clean!r}")
        out[clean] = value
    return out


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (``weights_only=True`` or safetensors) and normalise its keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path))
        except Exception as exc:
            raise CheckpointFormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointFormatError(
                f"{path}: refused by torch.load(weights_only=True): it contains objects other than "
                f"tensors and plain containers ({first}). Re-save it as a plain state dict."
            ) from exc
        except Exception as exc:
            raise CheckpointFormatError(f"{path}: cannot be read as a PyTorch checkpoint ({exc})") from exc
    return normalize_state_dict(obj, str(path))


def _fit_problems(expected: Mapping[str, torch.Size], state: Mapping[str, torch.Tensor]) -> list[str]:
    """Human-readable problems of fitting ``state`` to keys/shapes ``expected``."""
    missing = [k for k in expected if k not in state and not k.endswith(_DERIVED_BUFFERS)]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
        for k in state
        if k in expected and not k.endswith(".attn_mask") and tuple(state[k].shape) != tuple(expected[k])
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("shape mismatches", mis_shaped)):
        if items:
            more = f" ... (+{len(items) - 10} more)" if len(items) > 10 else ""
            problems.append(f"{label} ({len(items)}): {', '.join(items[:10])}{more}")
    return problems


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``state`` fits ``model`` exactly (works on meta)."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    problems = _fit_problems(expected, state)
    if problems:
        raise CheckpointMismatchError(
            f"{source}: checkpoint does not fit {type(model).__name__}: " + "; ".join(problems)
        )


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Strictly load ``state`` into ``model``; derived Swin buffers keep the model's own values."""
    check_state_dict(model, state, source)
    own = model.state_dict()
    for key, value in state.items():
        if key.endswith(".relative_position_index") and not torch.equal(value.cpu(), own[key].cpu()):
            raise CheckpointMismatchError(f"{source}: {key} differs from the architecture's index")
    payload = {k: v for k, v in state.items() if not k.endswith(_DERIVED_BUFFERS)}
    result = model.load_state_dict(payload, strict=False)
    leftover = [k for k in result.missing_keys if not k.endswith(_DERIVED_BUFFERS)]
    if leftover or result.unexpected_keys:  # pragma: no cover - guarded by check_state_dict
        raise CheckpointMismatchError(f"{source}: {leftover} missing, {result.unexpected_keys} unexpected")
    return model


def _materialize(cls: type[nn.Module], params: dict, device: str | torch.device) -> nn.Module:
    """Build without random init (meta, then empty storage on ``device``) and refill derived buffers."""
    with torch.device("meta"):
        model = cls(**params)
    model = model.to_empty(device=device)
    if isinstance(model, UNetModelSwin):
        model.reset_buffers()
    return model


def _load_network(cls, params, key, path, device, dtype, cache_dir, offline_dir, download, sha256):
    if path is None:
        path = resolve_checkpoint(key, cache_dir=cache_dir, offline_dir=offline_dir,
                                  download=download, sha256=sha256)
    elif sha256:
        verify_checksum(path, sha256)
    state = load_state_dict(path)
    model = _materialize(cls, params, device)
    load_into(model, state, str(path))
    return model.to(dtype=dtype).eval().requires_grad_(False)


def load_unet(
    version: str = "v3",
    path: str | os.PathLike | None = None,
    *,
    params: dict | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    download: bool = True,
    sha256: str | None = None,
) -> UNetModelSwin:
    """The released denoiser of ``version`` (``v1``, ``v2``, ``v3``, ``bicsr``), in eval mode with
    ``requires_grad`` off (call ``.requires_grad_(True)`` to fine-tune).

    ``path`` loads a local file instead of the registry's; ``params`` overrides the architecture
    (constructor arguments), e.g. for small test models.
    """
    entry = get_entry(version)
    if entry.kind != "unet":
        raise ValueError(f"{version!r} is not a UNet checkpoint")
    params = params if params is not None else released_config(entry.config).unet_params
    return _load_network(UNetModelSwin, params, entry, path, device, dtype, cache_dir, offline_dir,
                         download, sha256)


def load_autoencoder(
    path: str | os.PathLike | None = None,
    *,
    params: dict | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    offline_dir: str | os.PathLike | None = None,
    download: bool = True,
    sha256: str | None = None,
) -> VQModelTorch:
    """The released VQ-f4 autoencoder (``vqgan``), in eval mode with ``requires_grad`` off."""
    params = params if params is not None else AUTOENCODER_PARAMS
    return _load_network(VQModelTorch, params, CHECKPOINTS["vqgan"], path, device, dtype, cache_dir,
                         offline_dir, download, sha256)


def architecture_for(key: str | CheckpointEntry) -> nn.Module:
    """The full-size network of a registry entry, on the meta device (no memory)."""
    entry = get_entry(key)
    if entry.kind == "spandrel":
        raise ValueError(f"{entry.key!r} is a spandrel network: its architecture is detected from the file "
                         "(resshift.methods.spandrel_sr.load_descriptor)")
    with torch.device("meta"):
        if entry.kind == "unet":
            return UNetModelSwin(**released_config(entry.config).unet_params)
        return VQModelTorch(**AUTOENCODER_PARAMS)


def with_hash(key: str | CheckpointEntry, sha256: str) -> CheckpointEntry:
    """A copy of an entry with a pinned hash."""
    return replace(get_entry(key), sha256=sha256.lower())
