"""Learned metrics through pyiqa: our glue only (paths, input convention, isolation), never the models.

pyiqa is built with explicit file paths for every weight it would otherwise download
(``pretrained_model_path`` for LPIPS/MUSIQ, the NIQE parameters of the weights table (basicsr's
``niqe_pris_params.npz``) handed over as an in-memory MATLAB file, the CLIP file path as ``backbone``
for CLIP-IQA), and
``TORCH_HOME`` points at the metric weight directory while the torchvision backbones and OpenAI CLIP
files load, so construction never reaches the network. Availability is decided before construction by
:func:`resshift.metrics.availability.unavailable_reason`.

MANIQA and TOPIQ are loaded the way pyiqa loads them by default (strictly, the whole model), from our
folder: pyiqa's download cache (fixed at import as ``<torch hub>/pyiqa``) is pointed at
``DIR/hub/pyiqa`` during construction, where the file already is. Both would also fetch an ImageNet
backbone from the Hugging Face hub through timm (a ViT-B/8, a ResNet50) into a cache outside the metric
folder; their checkpoints hold every backbone weight and are loaded strictly, so those backbones are
built without pretrained weights (TOPIQ: pyiqa's own ``backbone_pretrain=False``; MANIQA, which has no
such option: ``timm.create_model`` sees ``pretrained=False`` while MANIQA is built). LIQE caches its
prompt features in pyiqa's cache folder, which is then ``DIR/hub/pyiqa`` too. pyiqa's CLIP loader
(LIQE's ViT-B/32) re-downloads a file whose SHA-256 differs from the one in its URL; availability
checks that same hash first, so a built LIQE has found the official file.

FID/KID use pyiqa's ``fid`` network only (its folder-reading ``forward`` does not fit a run that scores
images as they come): :func:`build_fid_inception` builds it through ``pyiqa.create_metric('fid')`` while
pyiqa's weight loader for that network is replaced by a safe, strict load of our file (pyiqa itself
would fetch the file by URL and unpickle it with ``weights_only=False``).

Tested with pyiqa 0.1.16 (the range pinned in ``pyproject.toml``).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resshift.metrics.base import Metric, MetricInputError
from resshift.metrics.isolation import preserve_global_state
from resshift.metrics.registry import MetricSpec
from resshift.weights.formats import load_into, load_state_dict
from resshift.weights.metric_files import torch_home, weight_path


def import_clip_support() -> None:
    """Import pyiqa's CLIP glue, working around ``openai-clip`` 1.0.1 needing ``pkg_resources``.

    ``clip/clip.py`` does ``from pkg_resources import packaging`` (only for a torch version check);
    setuptools >= 81 no longer ships ``pkg_resources``. When it is missing, a stand-in module exposing
    just ``packaging`` is visible *only while* ``clip`` is imported, then removed again, so nobody else
    sees it. Raises ``ImportError`` with the cause when the import still fails.
    """
    try:
        importlib.import_module("pyiqa.archs.clip_imports")
        return
    except ModuleNotFoundError as exc:
        if exc.name != "pkg_resources":
            raise
    import packaging.version

    stand_in = types.ModuleType("pkg_resources")
    stand_in.packaging = importlib.import_module("packaging")  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = stand_in
    try:
        for name in [m for m in sys.modules if m == "clip" or m.startswith("clip.")]:
            del sys.modules[name]  # a half-imported module from the failed attempt
        importlib.import_module("pyiqa.archs.clip_imports")
    finally:
        if sys.modules.get("pkg_resources") is stand_in:
            del sys.modules["pkg_resources"]
    assert packaging.version  # imported so that the stand-in's attribute has the submodule


def pyiqa_overrides(spec: MetricSpec, directory: str | Path) -> dict[str, Any]:
    """``create_metric`` keyword overrides that make pyiqa load our local files (no download)."""
    name = spec.pyiqa_name
    if name in ("lpips", "lpips-vgg"):
        return {"pretrained_model_path": str(weight_path(spec.weights[0], directory))}
    if name == "musiq":
        return {"pretrained_model_path": str(weight_path("musiq-koniq", directory))}
    if name == "niqe":
        return {"pretrained_model_path": niqe_parameters_mat(weight_path("niqe-params", directory))}
    if name == "clipiqa":
        # pyiqa's CLIP loader accepts a file path instead of a model name; the SHA-256 of the file is
        # checked beforehand (availability), so this is the official RN50.
        return {"backbone": str(weight_path("clip-rn50", directory))}
    if name in ("dists", "liqe"):  # loaded as pyiqa loads its default file (same strictness and keys)
        return {"pretrained_model_path": str(weight_path(spec.weights[0], directory))}
    if name in ("maniqa", "maniqa-pipal"):
        return {}  # pyiqa's default (strict) load, from the redirected cache; see pyiqa_cache_in
    if name == "topiq_nr":
        return {"backbone_pretrain": False}  # the checkpoint holds the ResNet50 (strict load)
    raise KeyError(f"{spec.name}: no pyiqa glue for pyiqa metric {name!r}")


def niqe_parameters_mat(npz_path: str | Path) -> io.BytesIO:
    """The NIQE model of basicsr's ``niqe_pris_params.npz`` (``mu_pris_param`` ``1x36``,
    ``cov_pris_param`` ``36x36``, float64: the MATLAB release's ``modelparameters.mat`` values) as the
    in-memory MATLAB file pyiqa's ``NIQE`` reads (``scipy.io.loadmat``: keys ``mu_prisparam``,
    ``cov_prisparam``). The values pass unchanged (float64 both ways).

    Raises ``ValueError`` naming the file when an array is missing or mis-shaped.
    """
    import scipy.io

    with np.load(npz_path) as data:
        missing = [k for k in ("mu_pris_param", "cov_pris_param") if k not in data.files]
        if missing:
            raise ValueError(f"{npz_path}: no {missing[0]!r} array (not basicsr's NIQE parameter file)")
        mu, cov = np.asarray(data["mu_pris_param"], np.float64), np.asarray(data["cov_pris_param"], np.float64)
    if mu.size != 36 or cov.shape != (36, 36):
        raise ValueError(f"{npz_path}: NIQE parameters of shapes {mu.shape}, {cov.shape}; expected 36 and 36x36")
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"mu_prisparam": mu.reshape(1, 36), "cov_prisparam": cov})
    buffer.seek(0)
    return buffer


# pyiqa modules holding their own copy of the download cache folder (``from ... import DEFAULT_CACHE_DIR``).
_CACHE_DIR_HOLDERS = ("pyiqa.utils.download_util", "pyiqa.archs.liqe_arch", "pyiqa.archs.topiq_arch")


@contextlib.contextmanager
def pyiqa_cache_in(directory: str | Path) -> Iterator[Path]:
    """Point pyiqa's download cache (and the copies its modules hold) at ``directory/hub/pyiqa``.

    pyiqa fixes the folder when it is imported; this sets it for the duration of the block and puts
    the previous values back afterwards. pyiqa finds the files availability checked there and so
    downloads nothing.
    """
    cache = Path(directory).resolve() / "hub" / "pyiqa"
    importlib.import_module(_CACHE_DIR_HOLDERS[0])  # pyiqa imports its arch modules lazily: take those loaded
    modules = [sys.modules[m] for m in _CACHE_DIR_HOLDERS if m in sys.modules]
    before = [m.DEFAULT_CACHE_DIR for m in modules]
    for module in modules:
        module.DEFAULT_CACHE_DIR = str(cache)
    try:
        yield cache
    finally:
        for module, value in zip(modules, before, strict=True):
            module.DEFAULT_CACHE_DIR = value


@contextlib.contextmanager
def timm_without_pretrained_weights() -> Iterator[None]:
    """While the block runs, ``timm.create_model`` builds every network with ``pretrained=False``.

    For pyiqa models whose checkpoint replaces all backbone weights strictly (MANIQA's ViT-B/8) but
    which ask timm for ImageNet weights anyway: that request would download from the Hugging Face hub.
    """
    import timm

    real = timm.create_model

    def create_model(*args: Any, **kwargs: Any) -> Any:
        kwargs["pretrained"] = False
        return real(*args, **kwargs)

    timm.create_model = create_model
    try:
        yield
    finally:
        timm.create_model = real


def _construction_guards(spec: MetricSpec, directory: Path) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(preserve_global_state())
    stack.enter_context(torch_home(directory))
    stack.enter_context(pyiqa_cache_in(directory))
    if spec.kind == "MANIQA":
        stack.enter_context(timm_without_pretrained_weights())
    return stack


@contextlib.contextmanager
def fid_inception_loaded_from(path: str | Path) -> Iterator[list[str]]:
    """While the block runs, pyiqa's FID Inception takes its weights from ``path``: read with
    ``torch.load(weights_only=True)`` (:func:`resshift.weights.formats.load_state_dict`) and loaded strictly.

    pyiqa's ``fid_inception_v3`` asks its ``load_pretrained_network`` for ``FID_WEIGHTS_URL``; the stand-in
    checks that the URL names a file of the same name as ``path`` (a pyiqa release that changed the file
    raises ``RuntimeError`` rather than loading the wrong weights) and never opens the URL. BatchNorm
    ``num_batches_tracked`` counters missing from the file keep the network's own values (they are not used
    in evaluation). Yields the list of URLs the stand-in was asked for.
    """
    import pyiqa.archs.inception as inception_module

    path = Path(path)
    asked: list[str] = []

    def load(net: torch.nn.Module, model_path: str, strict: bool = True, weight_keys: str | None = None) -> None:
        asked.append(model_path)
        wanted = model_path.rstrip("/").rsplit("/", 1)[-1]
        if wanted != path.name or weight_keys is not None:
            raise RuntimeError(f"pyiqa's FID Inception asks for {model_path!r}; the weights table holds {path.name}: "
                               "this pyiqa release uses another file")
        state = load_state_dict(path)
        counters = {k: v for k, v in net.state_dict().items() if k.endswith(".num_batches_tracked")}
        load_into(net, {**counters, **state}, str(path))

    real = inception_module.load_pretrained_network
    inception_module.load_pretrained_network = load
    try:
        yield asked
    finally:
        inception_module.load_pretrained_network = real


def build_fid_inception(path: str | Path, device: str | torch.device) -> torch.nn.Module:
    """pyiqa's FID network (``create_metric('fid')``: ``pyiqa.archs.inception.InceptionV3`` up to the final
    average pool, 2048 features) with its weights from ``path``, in eval mode on ``device``.

    Called as ``net(x, False, False)[0]`` on ``(B, 3, 299, 299)`` inputs already normalised to pyiqa's
    clean-mode range, it returns the ``(B, 2048, 1, 1)`` pool3 features. Raises
    :class:`resshift.weights.formats.CheckpointMismatchError` naming the file when it does not fit.
    """
    import pyiqa

    with preserve_global_state(), fid_inception_loaded_from(path) as asked:
        model = pyiqa.create_metric("fid", as_loss=False, device=torch.device(device))
    if len(asked) != 1:
        raise RuntimeError(f"pyiqa's FID network loaded {len(asked)} weight files, expected 1 ({path.name})")
    net = model.net.model
    net.eval()
    return net


class PyiqaMetric(Metric):
    """A pyiqa ``InferenceModel`` behind :class:`Metric`: float32 ``[0, 1]`` RGB in, ``(B,)`` out."""

    def __init__(self, spec: MetricSpec, device: str | torch.device, directory: str | Path) -> None:
        super().__init__(spec, device)
        import pyiqa

        self.weights_dir = Path(directory)
        if spec.pyiqa_name in ("clipiqa", "liqe"):
            import_clip_support()
        if spec.pyiqa_name == "liqe":
            importlib.import_module("pyiqa.archs.liqe_arch")  # now, so that its cache folder is redirected
        overrides = pyiqa_overrides(spec, self.weights_dir)
        with _construction_guards(spec, self.weights_dir):
            self.model = pyiqa.create_metric(spec.pyiqa_name, as_loss=False, device=self.device, **overrides)
        self.model.eval()
        self._check_metadata()

    def _check_metadata(self) -> None:
        """pyiqa's own FR/NR and direction must agree with our spec (catches renamed/changed metrics)."""
        mode = getattr(self.model, "metric_mode", None)
        lower = getattr(self.model, "lower_better", None)
        if mode is not None and mode != self.spec.mode:
            raise RuntimeError(f"{self.name}: pyiqa says mode {mode}, registry says {self.spec.mode}")
        if lower is not None and bool(lower) != self.spec.lower_better:
            raise RuntimeError(f"{self.name}: pyiqa says lower_better={lower}, registry disagrees")

    def _check_size(self, sr: torch.Tensor) -> None:
        """A metric with a minimum short side (``min_side`` option, LIQE's 224) refuses smaller images.

        Raises :class:`MetricInputError` giving the size (the metrics phase records it for that image)
        rather than letting pyiqa assert or scoring a resized image.
        """
        min_side = self.spec.option_dict.get("min_side")
        h, w = sr.shape[-2:]
        if min_side is not None and min(h, w) < int(min_side):  # type: ignore[call-overload]
            raise MetricInputError(
                f"{self.name}: image of {h}x{w} (HxW) has a short side of {min(h, w)} px; {self.spec.pyiqa_name} "
                f"needs at least {min_side} px and is not computed on it (no resize: that would change the "
                "protocol)"
            )

    def _compute(self, sr: torch.Tensor, hr: torch.Tensor | None) -> torch.Tensor:
        self._check_size(sr)
        with preserve_global_state(), torch_home(self.weights_dir):
            if self.spec.full_reference:
                out = self.model(sr, hr)
            else:
                out = self.model(sr)
        return out.reshape(sr.shape[0])
