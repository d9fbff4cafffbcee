"""Per-image random streams: noise depends on (run seed, image name, tile), never on global state.

So a method's output for one image is the same whatever the batch, order or shard it runs in.
"""

from __future__ import annotations

import hashlib

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
