"""`resshift train heldout`: build the held-out evaluation set of the small models."""

from __future__ import annotations

import argparse
from pathlib import Path


def _heldout(args: argparse.Namespace) -> int:
    from resshift.train.heldout import build_heldout

    try:
        out = build_heldout(source=args.source, dest=args.dest, force=args.force)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}")
        return 1
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="training utilities (models are trained with `python -m resshift.train.app`)")
    tsub = p.add_subparsers(dest="train_command", metavar="ACTION")
    h = tsub.add_parser("heldout", help="build the imagenet-heldout set (small models' held-out split) into the cache")
    h.add_argument("--source", type=Path, default=None, help="folder of the ImageNet sample images "
                   "(default: <shared>/datasets/imagenet-samples)")
    h.add_argument("--dest", type=Path, default=None, help="output folder (default: the data cache)")
    h.add_argument("--force", action="store_true", help="rebuild even if a build from this split exists")
    h.set_defaults(func=_heldout)
