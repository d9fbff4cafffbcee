"""Build the held-out evaluation set of the small models (card ``datasets/imagenet-heldout.yaml``).

The first ``builder.count`` held-out names of the split file are read from the source folder, the
GT is made as ImageNet-Test's (shorter side to 256, bilinear, centre crop) and the LR by the
Real-ESRGAN *testing* degradation with one generator per image (``image_generator(seed, stem)``),
so the set is reproducible bit for bit on one platform. The files go to the data cache, where
``open_dataset("imagenet-heldout")`` finds them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from resshift.data.builders import center_gt
from resshift.data.cards import DatasetCard, load_card
from resshift.data.degradations.realesrgan import degrade_one, get_params
from resshift.data.sources import COMPLETE_MARKER, cached_set_dir
from resshift.io import array_to_tensor, decode_image, write_png
from resshift.paths import PROJECT_ROOT, shared_dir
from resshift.seeding import image_generator
from resshift.train.split import file_sha256, read_split

CARD = "imagenet-heldout"
DEFAULT_SOURCE = Path("datasets") / "imagenet-samples"


def build_heldout(card: DatasetCard | str = CARD, source: str | Path | None = None, dest: str | Path | None = None,
                  force: bool = False) -> Path:
    """Write the held-out pairs (``gt/``, ``lq/``, ``build.json``); returns the set's folder.

    An existing complete build made from the same split file is kept unless ``force``.
    """
    card = load_card(card) if isinstance(card, str) else card
    b = card.builder
    if not b or "split" not in b:
        raise ValueError(f"{card.path}: card {card.name!r} has no held-out builder recipe")
    split_path = Path(b["split"])
    split_path = split_path if split_path.is_absolute() else PROJECT_ROOT / split_path
    split = read_split(split_path)
    names = split.eval_names(int(b["count"]))
    source = Path(source) if source is not None else shared_dir() / DEFAULT_SOURCE
    dest = Path(dest) if dest is not None else cached_set_dir(card)
    split_sha = file_sha256(split_path)
    record_path = dest / "build.json"
    if not force and (dest / COMPLETE_MARKER).is_file() and record_path.is_file():
        if json.loads(record_path.read_text()).get("split_sha256") == split_sha:
            return dest
    missing = [n for n in names if not (source / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{source}: {len(missing)} held-out image(s) missing, e.g. {missing[:3]}")
    params = get_params(str(b.get("degradation", "testing")))
    seed, size = int(b.get("seed", 0)), int(b["gt_size"])
    for name in names:
        arr, _ = decode_image(source / name)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        gt = array_to_tensor(center_gt(arr, size))
        stem = Path(name).stem
        lr, _ = degrade_one(gt, image_generator(seed, stem), params)
        write_png(dest / str(card.layout.hr) / f"{stem}.png", gt)
        write_png(dest / card.layout.lr / f"{stem}.png", lr)
    record = {"card": card.name, "card_sha256": card.card_sha256, "protocol_id": card.protocol_id,
              "source": str(source.resolve()), "count": len(names), "seed": seed, "degradation": params.name,
              "split_sha256": split_sha, "files": names}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    (dest / COMPLETE_MARKER).write_text("built\n")
    return dest
