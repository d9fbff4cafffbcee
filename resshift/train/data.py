"""Training pairs: random HR patches from a folder of images, LR made on the fly.

Images are read once through the dataset layer (``open_dataset("folder", root=DIR)``), resized so
that the shorter side is ``short_side`` (bilinear with antialiasing, as the ImageNet-Test ground
truth is made), and kept in memory as uint8; the resized set is cached on disk
(``<cache>/train/patches-<key>.pt``, read back with ``weights_only=True``) so that later runs start
at once.

Each training sample ``i`` of micro-batch ``micro`` at step ``step`` on rank ``rank`` draws
everything (which image, crop position, horizontal flip, then the whole degradation) from its own
generator seeded by ``derive_seed(seed, "sample", rank, step, micro, i)``. The data stream is
therefore a pure function of (seed, rank, step): a resumed run sees exactly the batches an
uninterrupted one would have seen.

LR: ``"realesrgan"`` = the Real-ESRGAN *training* degradation
(:data:`resshift.data.degradations.realesrgan.TRAINING`), or ``"bicubic"`` = MATLAB-bicubic x1/4
rounded to 8 bits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from resshift.atomic import atomic_path
from resshift.data.degradations.matlab_resize import bicubic_downscale_8bit
from resshift.data.degradations.realesrgan import degrade
from resshift.paths import cache_dir
from resshift.seeding import derive_seed

DEGRADATIONS = ("realesrgan", "bicubic")
MIN_REALESRGAN_PATCH = 64  # LR 16: the final sinc filter (15 taps) needs reflect padding < the LR side


def resize_short_side(image: torch.Tensor, short_side: int) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1] -> shorter side ``short_side`` (bilinear, antialiased), uint8."""
    h, w = image.shape[-2:]
    s = short_side / min(h, w)
    size = (max(short_side, round(h * s)), max(short_side, round(w * s)))
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return out.mul(255.0).round().clamp(0, 255).to(torch.uint8)


def _cache_key(root: Path, files: Sequence[Path], short_side: int) -> str:
    h = hashlib.sha256(f"{root.resolve()}|{short_side}|".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:20]


def load_images(root: str | Path, names: Sequence[str] | None, short_side: int,
                use_cache: bool = True) -> tuple[list[str], list[torch.Tensor]]:
    """Read the images of ``root`` whose file names are in ``names`` (all if ``None``), resized.

    Returns ``(file names, uint8 tensors (3, H, W))`` sorted by name. Unknown names raise ``KeyError``.
    """
    from resshift.data import open_dataset

    root = Path(root)
    ds = open_dataset("folder", root=root)
    by_file = {Path(it.lr).name: it for it in ds.items}
    wanted = sorted(by_file) if names is None else sorted(set(names))
    missing = [n for n in wanted if n not in by_file]
    if missing:
        raise KeyError(f"{root}: {len(missing)} training image(s) not found, e.g. {missing[:3]}")
    files = [Path(by_file[n].lr) for n in wanted]
    key = _cache_key(root, files, short_side)
    path = cache_dir() / "train" / f"patches-{key}.pt"
    if use_cache and path.is_file():
        data = torch.load(path, weights_only=True)
        if data.get("names") == wanted:
            return wanted, list(data["images"])
    images = [resize_short_side(ds.read(by_file[n]).lr, short_side) for n in wanted]
    if use_cache:
        with atomic_path(path) as tmp:
            torch.save({"names": wanted, "images": images}, tmp)
        (path.with_suffix(".json")).write_text(json.dumps({"root": str(root), "short_side": short_side,
                                                            "count": len(wanted)}) + "\n")
    return wanted, images


class PatchPairs:
    """Random ``(hr [B,3,P,P], lr [B,3,P/s,P/s])`` pairs in [0, 1] from in-memory uint8 images.

    Args:
        images: uint8 ``(3, H, W)`` tensors with both sides >= ``patch``.
        patch: HR patch side (a multiple of ``scale``).
        degradation: ``"realesrgan"`` (training parameters) or ``"bicubic"``.
        seed: the run seed.
    """

    def __init__(self, images: Sequence[torch.Tensor], patch: int = 64, scale: int = 4,
                 degradation: str = "realesrgan", seed: int = 0) -> None:
        if degradation not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {degradation!r} (known: {', '.join(DEGRADATIONS)})")
        if patch % scale:
            raise ValueError(f"patch {patch} is not a multiple of the scale {scale}")
        if degradation == "realesrgan" and patch < MIN_REALESRGAN_PATCH:
            raise ValueError(f"the Real-ESRGAN degradation needs patches of at least {MIN_REALESRGAN_PATCH}px "
                             f"(its blur kernels and final sinc filter), got {patch}; use degradation='bicubic'")
        small = [i for i, im in enumerate(images) if min(im.shape[-2:]) < patch]
        if small:
            raise ValueError(f"{len(small)} image(s) are smaller than the {patch}px patch (first: #{small[0]})")
        if not images:
            raise ValueError("no training images")
        self.images = list(images)
        self.patch, self.scale, self.degradation, self.seed = int(patch), int(scale), degradation, int(seed)

    def generators(self, batch: int, step: int, rank: int = 0, micro: int = 0) -> list[torch.Generator]:
        gens = []
        for i in range(batch):
            g = torch.Generator()
            g.manual_seed(derive_seed(self.seed, "sample", rank, step, micro, i))
            gens.append(g)
        return gens

    def crop(self, gen: torch.Generator) -> torch.Tensor:
        """One random HR patch (float [0, 1]) drawn with ``gen``."""
        idx = int(torch.randint(len(self.images), (1,), generator=gen))
        img = self.images[idx]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - self.patch + 1, (1,), generator=gen))
        left = int(torch.randint(w - self.patch + 1, (1,), generator=gen))
        out = img[:, top : top + self.patch, left : left + self.patch].float().div(255.0)
        if float(torch.rand((), generator=gen)) < 0.5:
            out = out.flip(-1)
        return out

    def batch(self, batch: int, step: int, rank: int = 0, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        gens = self.generators(batch, step, rank, micro)
        hr = torch.stack([self.crop(g) for g in gens])
        if self.degradation == "bicubic":
            lr = bicubic_downscale_8bit(hr, self.scale)
        else:
            lr = degrade(hr, gens, "training", scale=self.scale)
        return hr, lr
