"""Set-level metrics: FID and KID of a run's SR images against its HR images, from Inception features.

A set-level metric has one value per run, not per image. The runner extracts each image's features as it
goes (:class:`InceptionFeatures`: SR and HR, stored per shard in the run folder so that a resumed or
sharded run never recomputes them), then computes the value once from all of them
(:meth:`SetMetric.compute`). The convention is pyiqa 0.1.16's ``fid`` in its default ``clean`` mode,
folder against folder, which is how the one-step diffusion SR papers since OSEDiff compute FID:

1. each image as 8-bit RGB; each channel resized to 299x299 by PIL's bicubic filter on float32 values
   (antialiased when shrinking; clean-fid's "clean" resize, Parmar et al., CVPR 2022), clipped to
   ``[0, 255]``;
2. normalised as ``(x - 128) / 128`` and passed through pytorch-fid's port of TensorFlow's Inception-v3
   (``pt_inception-2015-12-05``) up to the final average pool: 2048 features per image;
3. **FID** (Heusel et al., NeurIPS 2017): the Fréchet distance between Gaussians with the two sets'
   sample means and covariances (``ddof=1``),
   ``|mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))`` (:func:`frechet_distance`);
4. **KID** (Bińkowski et al., ICLR 2018): the unbiased estimate of the squared MMD with the polynomial
   kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over subsets (clean-fid's ``kernel_distance``, which
   pyiqa's ``fid`` with ``distance_type='mmd'`` follows) (:func:`kernel_inception_distance`).

Both are biased and vary strongly with the sample below about 1000 images (StableSR issue #105); the
registry's ``warn_below_images`` option carries that threshold to the summaries and reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resshift.metrics.base import MetricInputError, check_image_batch
from resshift.metrics.isolation import preserve_global_state
from resshift.metrics.registry import MetricSpec
from resshift.provenance import file_sha256

#: Side of the Inception input (pyiqa ``FID.test_img_size``).
INCEPTION_SIZE = 299
#: Length of one image's feature vector (pool3 of Inception-v3).
FEATURE_DIM = 2048
#: Tag of the feature convention stored with every feature file; it changes when the features would.
FEATURES_VERSION = "inception_v3_fid_pool3_clean299@1"


def clean_resize(image: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """The clean-fid resize of one image as pyiqa's ``fid`` does it in ``clean`` mode.

    Args:
        image: ``(3, H, W)`` RGB in ``[0, 1]`` (any float dtype, any device); quantised to its 8-bit levels
            ``round(255 x)`` first (exact for images read from 8-bit files).
        size: output side in pixels.

    Returns:
        ``(3, size, size)`` float32 on the CPU, values in ``[0, 255]``: each channel resized by PIL's
        bicubic filter in mode ``F`` (float32; antialiased when shrinking), then clipped to ``[0, 255]``.
    """
    from PIL import Image

    levels = image.detach().float().clamp(0.0, 1.0).mul(255.0).round().cpu().numpy().astype(np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(ch)).resize((size, size), Image.Resampling.BICUBIC),
                           dtype=np.float32) for ch in levels]
    return torch.from_numpy(np.clip(np.stack(channels), 0.0, 255.0))


class InceptionFeatures:
    """The 2048-d FID Inception features of images, in pyiqa ``fid``'s clean mode.

    Built from the weights file ``pt_inception-2015-12-05-6726825d.pth`` (weights table row
    ``fid-inception``) through pyiqa's network definition
    (:func:`resshift.metrics.pyiqa_backend.build_fid_inception`); nothing is downloaded.
    """

    def __init__(self, weights_file: str | Path, device: str | torch.device = "cpu") -> None:
        from resshift.metrics.pyiqa_backend import build_fid_inception

        self.weights_file = Path(weights_file)
        self.device = torch.device(device)
        self.weights_sha256 = file_sha256(self.weights_file)
        self.version = FEATURES_VERSION
        self.dim = FEATURE_DIM
        self.network = build_fid_inception(self.weights_file, self.device)

    def __call__(self, images: torch.Tensor | Sequence[torch.Tensor]) -> np.ndarray:
        """Features of a batch.

        Args:
            images: a ``(B, 3, H, W)`` batch or a sequence of ``(3, H, W)`` images of any sizes, RGB in
                ``[0, 1]`` (float or uint8; one channel = grayscale). Each image is resized on its own, so
                batching changes a feature by float round-off at most.

        Returns:
            ``(B, 2048)`` float32 array. Raises :class:`~resshift.metrics.base.MetricInputError` for images
            outside the input convention and ``RuntimeError`` when the network returns non-finite values.
        """
        if isinstance(images, torch.Tensor):
            x = list(check_image_batch(images, "inception features"))
        else:
            x = [check_image_batch(img[None], f"inception features, image {i}")[0] for i, img in enumerate(images)]
        if not x:
            raise MetricInputError("inception features: no images")
        batch = torch.stack([clean_resize(img) for img in x])
        batch = ((batch - 128.0) / 128.0).to(self.device)
        with preserve_global_state(), torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            out = self.network(batch, False, False)[0]
        feats = out.reshape(out.shape[0], -1).to(torch.float32).cpu().numpy()
        if feats.shape != (len(x), FEATURE_DIM):
            raise RuntimeError(f"Inception features of shape {feats.shape}, expected ({len(x)}, {FEATURE_DIM})")
        if not np.isfinite(feats).all():
            raise RuntimeError("Inception features contain non-finite values")
        return feats

    def describe(self) -> dict[str, Any]:
        return {"features": self.version, "weights_file": self.weights_file.name,
                "weights_sha256": self.weights_sha256, "device": str(self.device)}


def _check_features(a: np.ndarray, b: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (n, d) arrays of one d, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < minimum:
        raise ValueError(f"needs at least {minimum} images in each set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature sets contain non-finite values")
    return a, b


def _covariance_factor(centred: np.ndarray) -> np.ndarray:
    """A matrix ``F`` with ``F F^T`` = the sample covariance (ddof 1) of the ``(n, d)`` centred rows: the
    scaled rows themselves (``d x n``) when ``n <= d``, else the symmetric square root (``d x d``, from
    ``numpy.linalg.eigh``, eigenvalues below 0 by round-off set to 0)."""
    n, d = centred.shape
    if n <= d:
        return centred.T / np.sqrt(n - 1)
    w, v = np.linalg.eigh(centred.T @ centred / (n - 1))
    return v * np.sqrt(np.clip(w, 0.0, None))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets: ``|mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2))``.

    ``mu`` and ``S`` are the sample mean and covariance (``ddof=1``, as ``numpy.cov``) of each ``(n, d)``
    set, in float64 (Heusel et al., NeurIPS 2017, eq. 6; Dowson & Landau 1982 for the Gaussian Fréchet
    distance).

    The trace term is computed without forming ``(S_a S_b)^(1/2)``: with ``S_a = F_a F_a^T`` and
    ``S_b = F_b F_b^T``, the eigenvalues of ``S_a S_b`` are those of ``(F_a^T F_b)(F_a^T F_b)^T``, so
    ``Tr((S_a S_b)^(1/2))`` is the sum of the singular values of ``F_a^T F_b`` (``numpy.linalg.svd``). For
    ``n`` below 2048 the factors are the centred features themselves, a ``n_a x n_b`` problem instead of
    the 2048x2048 ``scipy.linalg.sqrtm`` that pytorch-fid, clean-fid and pyiqa use; the two agree to
    round-off (tested), and this form is real by construction: ``sqrtm`` of the rank-deficient product
    (fewer than 2048 images) comes back complex with round-off imaginary parts that those libraries drop.

    Raises ``ValueError`` for sets of fewer than 2 images, mismatched widths or non-finite values.
    The result is 0 for identical sets up to round-off and does not depend on the order of the images.
    """
    a, b = _check_features(features_a, features_b, 2)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    ca, cb = a - mu_a, b - mu_b
    trace_a = float(np.einsum("ij,ij->", ca, ca)) / (len(a) - 1)
    trace_b = float(np.einsum("ij,ij->", cb, cb)) / (len(b) - 1)
    cross = _covariance_factor(ca).T @ _covariance_factor(cb)
    trace_sqrt = float(np.linalg.svd(cross, compute_uv=False).sum())
    diff = mu_a - mu_b
    return float(diff @ diff) + trace_a + trace_b - 2.0 * trace_sqrt


def mmd2_unbiased_polynomial(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD of two equal-size samples with the kernel ``k(u, v) = (u.v / d + 1)^3``:
    ``[sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2``
    (Gretton et al., JMLR 2012, eq. 3 for equal sizes; the kernel of Bińkowski et al., ICLR 2018)."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> float:
    """KID: the mean over ``subsets`` draws of :func:`mmd2_unbiased_polynomial` on ``m = min(n_a, n_b,
    subset_size)`` images drawn without replacement from each set (clean-fid's ``kernel_distance``
    convention; pyiqa ``fid`` with ``distance_type='mmd'``). Not scaled by 1000.

    The draws come from ``numpy.random.default_rng(seed)`` (pyiqa draws from the global, unseeded NumPy
    generator), so a run's value is reproducible. When both sets have exactly ``m`` images every draw is
    the whole set and the estimate is order-free, so it is computed once. Raises ``ValueError`` as
    :func:`frechet_distance` does.
    """
    a, b = _check_features(features_a, features_b, 2)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"subsets must be >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(len(a), len(b), subset_size)
    if len(a) == m and len(b) == m:
        return mmd2_unbiased_polynomial(a, b)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = b[rng.choice(len(b), m, replace=False)]
        y = a[rng.choice(len(a), m, replace=False)]
        total += mmd2_unbiased_polynomial(x, y)
    return total / subsets


class SetMetric:
    """A built set-level metric (``fid``, ``kid``): one value from the features of two image sets.

    ``features`` is the :class:`InceptionFeatures` extractor it shares with the other set-level metrics of
    a run (one network, one pass over the images).
    """

    def __init__(self, spec: MetricSpec, features: InceptionFeatures) -> None:
        if not spec.set_level:
            raise ValueError(f"{spec.name} is not a set-level metric")
        statistic = spec.option_dict.get("distance_type")
        if statistic not in ("frechet", "mmd"):
            raise ValueError(f"{spec.name}: option distance_type must be 'frechet' or 'mmd', got {statistic!r}")
        self.spec = spec
        self.features = features

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def min_images(self) -> int:
        """Fewest images per set the statistic is defined for (a covariance needs 2)."""
        return 2

    def compute(self, sr_features: np.ndarray, hr_features: np.ndarray) -> float:
        """The metric of the SR set against the HR set, from ``(n, 2048)`` feature arrays."""
        opts: dict[str, Any] = self.spec.option_dict
        if opts["distance_type"] == "frechet":
            return frechet_distance(sr_features, hr_features)
        return kernel_inception_distance(sr_features, hr_features, subsets=int(opts["subsets"]),
                                         subset_size=int(opts["subset_size"]), seed=int(opts["subset_seed"]))

    def describe(self) -> dict[str, Any]:
        rec = self.spec.as_record()
        rec.update(self.features.describe())
        return rec

    def __repr__(self) -> str:
        return f"SetMetric({self.spec.version}, device={self.features.device})"
