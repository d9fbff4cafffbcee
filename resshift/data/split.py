"""Deterministic train / held-out split of a folder of images, by SHA-256 of the file names.

Each name gets the key ``sha256(salt + name)``; the ``heldout`` names with the smallest keys are held
out, every other name is for training. Adding or removing other files never moves a name from one
side to the other unless it changes which names are among the smallest keys. The split is stored as
JSON (``split.json``) and committed with the models that were trained on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SALT = "resshift-bench/small-models/split/1"


def name_key(name: str, salt: str = DEFAULT_SALT) -> str:
    """The hex SHA-256 of ``salt + name`` that orders names for the split."""
    return hashlib.sha256((salt + name).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Split:
    """A split of file names (with suffix): ``heldout`` (sorted by key) and ``train`` (sorted by name)."""

    source: str
    salt: str
    heldout: tuple[str, ...]
    train: tuple[str, ...]

    def eval_names(self, count: int) -> list[str]:
        """The first ``count`` held-out names (the evaluation subset)."""
        if count > len(self.heldout):
            raise ValueError(f"asked for {count} evaluation images but only {len(self.heldout)} are held out")
        return list(self.heldout[:count])

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "salt": self.salt, "heldout": list(self.heldout),
                           "train_count": len(self.train), "train": list(self.train)}, indent=1) + "\n"


def make_split(names: Iterable[str], heldout: int, source: str = "", salt: str = DEFAULT_SALT) -> Split:
    """Hold out the ``heldout`` names with the smallest keys; the rest is the training list."""
    names = sorted(set(names))
    if not 0 < heldout < len(names):
        raise ValueError(f"cannot hold out {heldout} of {len(names)} names")
    by_key = sorted(names, key=lambda n: name_key(n, salt))
    held = tuple(by_key[:heldout])
    held_set = set(held)
    return Split(source, salt, held, tuple(n for n in names if n not in held_set))


def write_split(split: Split, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(split.to_json(), encoding="utf-8")
    return path


def read_split(path: str | Path) -> Split:
    """Read a ``split.json``; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Split(str(data["source"]), str(data["salt"]), tuple(data["heldout"]), tuple(data["train"]))
    except FileNotFoundError:
        raise FileNotFoundError(f"split file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a split file ({err})") from err
