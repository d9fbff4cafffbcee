"""Metric weights for offline machines: the expected files, where they live, fetching and checking.

The weight directory has the layout of a ``TORCH_HOME`` (so an existing ``~/.cache/torch`` can be
pointed at directly)::

    DIR/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth      pyiqa's own weights (>= 0.1.13 cache layout)
    DIR/hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth
    DIR/hub/pyiqa/niqe_modelparameters.mat
    DIR/hub/checkpoints/alexnet-owt-7be5be79.pth    torchvision backbones (LPIPS)
    DIR/hub/clip/RN50.pt                            OpenAI CLIP (CLIP-IQA)

Its location is ``$RESSHIFT_METRIC_WEIGHTS``, else ``<resshift cache>/metric-weights``. On a connected
machine ``resshift metrics fetch-weights --dir DIR`` (or ``resshift weights fetch``) fills it; copy it
to the offline machine and set ``RESSHIFT_METRIC_WEIGHTS=DIR``. Metric construction never downloads:
a missing file makes the metric *unavailable* with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from resshift.paths import cache_dir
from resshift.provenance import file_sha256

WEIGHTS_ENV = "RESSHIFT_METRIC_WEIGHTS"

_HF_BASE = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class WeightFile:
    """One file a metric needs.

    Attributes:
        key: our name for it (referenced by :attr:`MetricSpec.weights`).
        relpath: path inside the weight directory (a ``TORCH_HOME`` layout).
        url: where :func:`fetch_metric_weights` downloads it from.
        sha256: the full SHA-256 where it is published (checked on fetch and before every use).
        check_name_prefix: whether the hex suffix of the file name (``name-<hex>.pth``, the torch.hub
            convention) is a SHA-256 prefix that is enforced on fetch. torchvision enforces it itself;
            pyiqa does not check its files, so for those a mismatch is only reported.
        note: where the URL/hash comes from.
    """

    key: str
    relpath: str
    url: str
    sha256: str | None = None
    check_name_prefix: bool = False
    note: str = ""

    @property
    def filename(self) -> str:
        return Path(self.relpath).name

    @property
    def name_prefix(self) -> str | None:
        """The hex suffix of the file name (``df73285e`` in ``LPIPS_v0.1_alex-df73285e.pth``)."""
        m = _HASH_IN_NAME.search(self.filename)
        return m.group(1) if m else None

    def resolved_url(self) -> str:
        """The URL, with the Hugging Face host replaced by ``$HF_ENDPOINT`` where that is set."""
        endpoint = os.environ.get("HF_ENDPOINT")
        if endpoint and self.url.startswith("https://huggingface.co/"):
            return endpoint.rstrip("/") + self.url[len("https://huggingface.co") :]
        return self.url


WEIGHT_FILES: dict[str, WeightFile] = {
    wf.key: wf
    for wf in (
        WeightFile(
            key="lpips-alex-v0.1",
            relpath="hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth",
            url=f"{_HF_BASE}/LPIPS_v0.1_alex-df73285e.pth",
            note="pyiqa lpips_arch default_model_urls['0.1_alex']",
        ),
        WeightFile(
            key="lpips-vgg-v0.1",
            relpath="hub/pyiqa/LPIPS_v0.1_vgg-a78928a0.pth",
            url=f"{_HF_BASE}/LPIPS_v0.1_vgg-a78928a0.pth",
            note="pyiqa lpips_arch default_model_urls['0.1_vgg']",
        ),
        WeightFile(
            key="torchvision-alexnet",
            relpath="hub/checkpoints/alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            check_name_prefix=True,
            note="torchvision AlexNet_Weights.IMAGENET1K_V1 (LPIPS backbone)",
        ),
        WeightFile(
            key="torchvision-vgg16",
            relpath="hub/checkpoints/vgg16-397923af.pth",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            check_name_prefix=True,
            note="torchvision VGG16_Weights.IMAGENET1K_V1 (LPIPS-VGG backbone)",
        ),
        WeightFile(
            key="clip-rn50",
            relpath="hub/clip/RN50.pt",
            url=(
                "https://openaipublic.azureedge.net/clip/models/"
                "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"
            ),
            sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
            note="OpenAI CLIP RN50; the SHA-256 is part of the official URL (pyiqa clip_model._MODELS)",
        ),
        WeightFile(
            key="musiq-koniq",
            relpath="hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth",
            url=f"{_HF_BASE}/musiq_koniq_ckpt-e95806b9.pth",
            note="pyiqa musiq_arch default_model_urls['koniq10k']",
        ),
        WeightFile(
            key="niqe-params",
            relpath="hub/pyiqa/niqe_modelparameters.mat",
            url=f"{_HF_BASE}/niqe_modelparameters.mat",
            note="pyiqa niqe_arch default_model_urls['niqe'] (not shipped in the pyiqa wheel; downloaded)",
        ),
    )
}


def metric_weights_dir() -> Path:
    """The metric weight directory: ``$RESSHIFT_METRIC_WEIGHTS``, else ``<cache_dir()>/metric-weights``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser().resolve() if env else cache_dir() / "metric-weights"


def weight_path(key: str, directory: str | Path | None = None) -> Path:
    """Where the weight file ``key`` lives in ``directory`` (default :func:`metric_weights_dir`)."""
    root = Path(directory) if directory is not None else metric_weights_dir()
    return root / get_weight_file(key).relpath


def get_weight_file(key: str) -> WeightFile:
    try:
        return WEIGHT_FILES[key]
    except KeyError:
        raise KeyError(f"unknown metric weight file {key!r}; known: {', '.join(WEIGHT_FILES)}") from None


FETCH_HINT = "fetch with `resshift weights fetch` or `resshift metrics fetch-weights` on a connected machine"


def weight_problem(key: str, directory: str | Path | None = None) -> str | None:
    """Why the weight file ``key`` cannot be used from ``directory``, or ``None`` when it can.

    Checks presence, non-emptiness and (where published) the full SHA-256. Never touches the network.
    """
    wf = get_weight_file(key)
    root = Path(directory) if directory is not None else metric_weights_dir()
    path = root / wf.relpath
    if not path.is_file():
        return f"weights file {wf.filename} not found in {path.parent} ({FETCH_HINT})"
    if path.stat().st_size == 0:
        return f"weights file {path} is empty ({FETCH_HINT})"
    if wf.sha256 is not None:
        got = file_sha256(path)
        if got != wf.sha256:
            return f"weights file {path} has SHA-256 {got}, expected {wf.sha256} (re-fetch it)"
    return None


@contextlib.contextmanager
def torch_home(directory: str | Path) -> Iterator[Path]:
    """Point ``TORCH_HOME`` (hence ``torch.hub.get_dir()``: torchvision, pyiqa, CLIP caches) at ``directory``.

    Restores the previous value on exit. Raises ``RuntimeError`` when ``torch.hub.set_dir`` was called
    earlier in the process (it overrides ``TORCH_HOME`` and would send lookups elsewhere).
    """
    directory = Path(directory).resolve()
    before = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(directory)
    try:
        hub = Path(torch.hub.get_dir()).resolve()
        if hub != directory / "hub":
            raise RuntimeError(
                f"torch.hub.get_dir() is {hub}, not {directory / 'hub'}: torch.hub.set_dir() was called in "
                "this process; metric weights would be looked up in the wrong place"
            )
        yield directory
    finally:
        if before is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = before


def _download_with_torch_hub(url: str, dest: Path) -> None:
    torch.hub.download_url_to_file(url, str(dest), progress=True)


@dataclass
class FetchResult:
    """What :func:`fetch_metric_weights` did with one file."""

    key: str
    path: Path
    status: str  # "present" | "downloaded" | "failed"
    sha256: str | None = None
    message: str = ""


def weights_for_metrics(names: Iterable[str] | None = None) -> list[str]:
    """Weight keys needed by the metric ``names`` (all registry metrics when ``None``), in order."""
    from resshift.metrics.registry import METRICS, get_spec

    specs = METRICS.values() if names is None else [get_spec(n) for n in names]
    keys: list[str] = []
    for spec in specs:
        for key in spec.weights:
            if key not in keys:
                keys.append(key)
    return keys


def _check_after_download(wf: WeightFile, path: Path) -> tuple[str, str]:
    """(sha256, warning) for a fetched file; raises ``ValueError`` on an enforced mismatch."""
    digest = file_sha256(path)
    if wf.sha256 is not None and digest != wf.sha256:
        raise ValueError(f"{path}: SHA-256 {digest} does not match the published {wf.sha256}")
    prefix = wf.name_prefix
    if prefix and not digest.startswith(prefix):
        msg = f"{path}: SHA-256 {digest} does not start with the file name's {prefix}"
        if wf.check_name_prefix:
            raise ValueError(msg)
        return digest, msg + " (not enforced for this file)"
    return digest, ""


def fetch_metric_weights(
    directory: str | Path | None = None,
    names: Iterable[str] | None = None,
    *,
    downloader: Callable[[str, Path], None] | None = None,
) -> list[FetchResult]:
    """Download every weight file the metrics ``names`` need into ``directory`` (a connected machine).

    Files already present and valid are kept. Each download goes to a temporary name, is checked
    (full SHA-256 where published, the name's hash prefix where enforced) and only then renamed into
    place; a failed check deletes it. Returns one :class:`FetchResult` per file; failures do not stop
    the others.
    """
    root = Path(directory) if directory is not None else metric_weights_dir()
    download = downloader or _download_with_torch_hub
    results: list[FetchResult] = []
    for key in weights_for_metrics(names):
        wf = get_weight_file(key)
        path = root / wf.relpath
        problem = weight_problem(key, root)
        if problem is None:
            results.append(FetchResult(key, path, "present", file_sha256(path)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        try:
            download(wf.resolved_url(), tmp)
            digest, warning = _check_after_download(wf, tmp)
            tmp.replace(path)
            results.append(FetchResult(key, path, "downloaded", digest, warning))
        except Exception as exc:  # noqa: BLE001 - recorded per file, the others go on
            tmp.unlink(missing_ok=True)
            results.append(FetchResult(key, path, "failed", None, f"{wf.resolved_url()}: {exc}"))
    return results
