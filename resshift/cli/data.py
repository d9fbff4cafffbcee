"""``resshift data ...``: list, fetch, build and verify the benchmark sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resshift.data.cards import list_cards, load_card


def _friendly(func):
    """Print data errors (missing files, bad checksums, bad cards) as one line and return 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its sub-commands."""
    data = subparsers.add_parser("data", help="benchmark data sets: list, fetch, build, verify")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    p = sub.add_parser("list", help="list the dataset cards and where each set is available")
    p.add_argument("--mirror", type=Path, default=None, help="data mirror root")
    p.set_defaults(func=_friendly(_list))

    p = sub.add_parser("fetch", help="download (or copy from a mirror / local archive) into the cache")
    p.add_argument("name")
    p.add_argument("--mirror", type=Path, default=None, help="copy from this data mirror")
    p.add_argument("--archive", type=Path, default=None, help="a local copy of the set's archive (.zip)")
    p.set_defaults(func=_friendly(_fetch))

    p = sub.add_parser("build", help="synthesise a set from source images (imagenet-test, imagenet-heldout)")
    p.add_argument("name", choices=["imagenet-test", "imagenet-heldout"])
    p.add_argument("--imagenet-val", type=Path, default=None,
                   help="imagenet-test: folder of ImageNet validation images (required)")
    p.add_argument("--source", type=Path, default=None, help="imagenet-heldout: folder of the ImageNet "
                   "sample images (default: <shared>/datasets/imagenet-samples)")
    p.add_argument("--force", action="store_true", help="imagenet-heldout: rebuild even if a build from "
                   "this split exists")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the data cache)")
    p.add_argument("--count", type=int, default=None, help="number of images (default: the card's, 3000)")
    p.add_argument("--seed", type=int, default=None, help="degradation seed (default: the card's)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_friendly(_build))

    p = sub.add_parser("verify", help="check a set's files against its card (checksums, pairs, sizes)")
    p.add_argument("name")
    p.add_argument("--root", type=Path, default=None, help="the set's folder (default: mirror, then cache)")
    p.add_argument("--mirror", type=Path, default=None)
    p.add_argument("--no-read", action="store_true", help="skip decoding every image")
    p.set_defaults(func=_friendly(_verify))


def _list(args: argparse.Namespace) -> int:
    from resshift.data.sources import DatasetNotAvailable, has_download_source, locate

    cards = [load_card(name) for name in list_cards()]
    w_name = max([len("name"), *(len(c.name) for c in cards)])
    w_id = max([len("protocol id"), *(len(c.protocol_id) for c in cards)])
    print(f"{'name':<{w_name}} {'protocol id':<{w_id}} {'kind':<11} {'items':>5}  available at")
    for card in cards:
        if card.kind == "embedded":
            where = "built on first use (no download)"
        elif card.kind == "huggingface" or not (card.mirror or card.sources):
            where = "user folder (root=...)"
        else:
            try:
                where = str(locate(card, mirror=args.mirror))
            except DatasetNotAvailable:
                where = (f"not here: resshift data fetch {card.name}" if has_download_source(card)
                         else "not here: no download source; pass its folder (root=...) or use a mirror")
        count = str(card.count) if card.count is not None else "-"
        print(f"{card.name:<{w_name}} {card.protocol_id:<{w_id}} {card.kind:<11} {count:>5}  {where}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from resshift.data.sources import fetch

    card = load_card(args.name)
    result = fetch(
        card, mirror=args.mirror, archive=args.archive, progress=lambda m: print(m, file=sys.stderr)
    )
    for msg in result.messages:
        print(msg)
    print(f"{card.name}: {result.files} files in {result.root} (from {result.source})")
    return 0


def _build(args: argparse.Namespace) -> int:
    from resshift.data.builders import build_heldout, build_imagenet_test

    card = load_card(args.name)
    if args.name == "imagenet-heldout":
        print(build_heldout(card, source=args.source, dest=args.out, force=args.force))
        return 0
    if args.imagenet_val is None:
        raise ValueError("imagenet-test: --imagenet-val FOLDER (ImageNet validation images) is required")

    def progress(i: int, n: int) -> None:
        if i == n or i % 100 == 0:
            print(f"{i}/{n}", file=sys.stderr)

    result = build_imagenet_test(card, args.imagenet_val, dest=args.out, count=args.count, seed=args.seed,
                                 device=args.device, progress=progress)
    print(f"built {result.count} pairs in {result.root} (protocol id {result.protocol_id}; not bit-identical "
          "to the released ImageNet-Test)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from resshift.data.loader import DatasetError, open_dataset
    from resshift.data.sources import verify_files

    card = load_card(args.name)
    problems: list[str] = []
    try:
        ds = open_dataset(card, root=args.root, mirror=args.mirror)
    except (DatasetError, FileNotFoundError) as exc:
        print(f"FAIL {card.name}: {exc}")
        return 1
    report = verify_files(card, ds.root) if card.manifest and ds.root is not None else None
    if report is not None:
        problems += report.problems
    if not args.no_read:
        for item in ds.items:
            try:
                ds.read(item)
            except DatasetError as exc:
                problems.append(str(exc))
    for p in problems:
        print(p)
    checked = f"{report.checked} checksums, " if report is not None else "no manifest in the card, "
    status = "OK" if not problems else f"FAIL ({len(problems)} problems)"
    print(f"{status} {card.name}: {len(ds)} items in {ds.root}; {checked}"
          f"{'images not decoded' if args.no_read else 'every image decoded and size-checked'}")
    return 0 if not problems else 1
