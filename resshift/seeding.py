"""Per-image random streams: noise depends on (run seed, image name, tile), never on global state.

So a method's output for one image is the same whatever the batch, order or shard it runs in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived from a run seed and any keys (image name, tile index, ...).

    Uses SHA-256 of the textual keys, so it is stable across processes, platforms and Python
    versions (unlike ``hash()``).
    """
    text = "\x1f".join([str(int(seed))] + [str(k) for k in keys])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def image_generator(seed: int, name: str, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by :func:`derive_seed` of (seed, name, *keys)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, name, *keys))
    return gen


def per_tile_generators(generators: Sequence[torch.Generator]):
    """Per-tile noise from one generator per image: tile k of image b gets its own generator.

    Each image's generator is consumed once (one 62-bit base seed); the tile generator is seeded with
    ``derive_seed(base, "tile", k)`` on the image generator's device. Returns a tile-noise provider
    ``(k, batch, shape) -> {"generators": [one per image]}`` (see :mod:`resshift.methods.tiling`), so
    an image's output depends only on (run seed, image name, tile index).
    """
    bases = [int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item()) for g in generators]
    devices = [g.device for g in generators]

    def provide(k: int, batch: int, shape: tuple[int, ...]) -> dict[str, Any]:
        if batch != len(bases):
            raise ValueError(f"{len(bases)} generators given for a batch of {batch} images")
        gens = []
        for base, dev in zip(bases, devices, strict=True):
            g = torch.Generator(device=dev)
            g.manual_seed(derive_seed(base, "tile", k))
            gens.append(g)
        return {"generators": gens}

    return provide
