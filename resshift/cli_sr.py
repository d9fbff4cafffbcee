"""``resshift sr``: super-resolve an image or a folder with any registered method (x4).

It runs the evaluation runner's SR loop (:mod:`resshift.pipeline`), so an image and seed give the
same PNG as ``nox -s eval``. Paper-table equivalents (official README commands):

* ImageNet-Test (64x64 LR):  ``resshift sr LQ_DIR -o OUT --model v1 --chop-size 64 --chop-stride 64 --bs 64``
* real-world sets:           ``resshift sr LQ_DIR -o OUT --model v1 --chop-size 512 --chop-stride 448``
  (journal tables: ``--model v3``).
* any other method, e.g. the shipped small model that runs offline: ``resshift sr IN -o OUT --method small-resshift``

Every option is checked before any weights are loaded; with ``--weights-dir`` every missing
checkpoint is listed at once, with the folders searched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from resshift.models.configs import RELEASED_VERSIONS as RESSHIFT_MODELS

RESSHIFT_CHOP = 512  # LR pixels: the official real-world setting


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sr",
        help="super-resolve an image or folder (x4) with ResShift or any registered method",
        description="Super-resolve an image file or every image in a folder (x4); writes OUT/<name>.png "
        "(sub-folders kept with --recursive). Exit code 1 when any image failed.",
    )
    p.add_argument("input", type=Path, help="image file or folder of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--method", default=None,
                   help="registered method name (an unknown name lists them; default: resshift-<--model>)")
    p.add_argument("--model", choices=RESSHIFT_MODELS, default="v3",
                   help="released ResShift checkpoint when --method is not given (default: v3)")
    p.add_argument("--chop-size", type=_positive_int, default=None,
                   help=f"tile side in LR pixels (ResShift default: {RESSHIFT_CHOP}; others: the method's own)")
    p.add_argument("--chop-stride", type=_positive_int, default=None,
                   help="tile stride in LR pixels (default: the official one: 512->448, 256->224, 64->48)")
    p.add_argument("--tile-batch", type=_positive_int, default=None, help="tiles per network call")
    p.add_argument("--bs", type=_positive_int, default=1, help="images per batch, same-size images only (default: 1)")
    p.add_argument("--seed", type=int, default=12345, help="run seed (default: 12345)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--dtype",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="network precision: autocast fp16/bf16 on CUDA; auto = fp16 on CUDA (as the official code), "
        "fp32 on CPU",
    )
    p.add_argument(
        "--vq-dtype",
        choices=("fp32", "fp16", "bf16"),
        default=None,
        help="ResShift: precision of the VQ autoencoder alone (default: as --dtype); fp16/bf16 need CUDA",
    )
    p.add_argument("--weights-dir", type=Path, default=None, help="ResShift: folder with the checkpoints (offline)")
    p.add_argument("--recursive", action="store_true", help="also read sub-folders (kept in the output)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_sr)


def method_options(args: argparse.Namespace, name: str, device: str, dtype: str) -> dict[str, Any]:
    """The build options of ``name`` from the command line; raises ``ValueError`` for bad combinations."""
    from resshift.methods.tiling import default_stride

    opts: dict[str, Any] = {"device": device, "dtype": dtype}
    is_resshift = name.startswith("resshift-")
    chop = args.chop_size if args.chop_size is not None else (RESSHIFT_CHOP if is_resshift else None)
    if chop is not None:
        stride = args.chop_stride if args.chop_stride is not None else default_stride(chop)
        if stride > chop:
            raise ValueError(f"--chop-stride {stride} is larger than --chop-size {chop}")
        opts.update(chop_size=chop, chop_stride=stride)
    elif args.chop_stride is not None:
        raise ValueError("--chop-stride needs --chop-size")
    if args.tile_batch is not None:
        opts["tile_batch"] = args.tile_batch
    if is_resshift:
        opts.update(vq_dtype=args.vq_dtype, weights_dir=args.weights_dir)
    elif args.vq_dtype or args.weights_dir:
        raise ValueError(f"--vq-dtype and --weights-dir apply to the ResShift methods, not {name}")
    return opts


def missing_weights(name: str, weights_dir: Path | None) -> list[str]:
    """For a ResShift method run offline from ``weights_dir``: every checkpoint not found, one line each
    (file name and the folders searched). Empty when nothing is missing or no folder was named."""
    if weights_dir is None or not name.startswith("resshift-"):
        return []
    from resshift import weights

    lines = []
    for key in (name.removeprefix("resshift-"), "vqgan"):
        entry = weights.get_entry(key)
        if weights.find_local(entry, weights_dir) is None:
            folders = ", ".join(str(d) for d in weights.search_dirs(weights_dir))
            lines.append(f"{entry.filename} ({key}) not found in {folders}")
    return lines


def run_sr(args: argparse.Namespace) -> int:
    from resshift.methods.registry import available_methods, build_method
    from resshift.pipeline import collect_inputs, super_resolve_files

    name = args.method or f"resshift-{args.model}"
    known = available_methods()
    if name not in known:
        print(f"error: unknown method {name!r}; choose one of: {', '.join(known)}", file=sys.stderr)
        return 1
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "fp16" if torch.device(device).type == "cuda" else "fp32"
    try:
        options = method_options(args, name, device, dtype)
        root, files = collect_inputs(args.input, recursive=args.recursive)
        if not files:
            print(f"error: {args.input}: no images found", file=sys.stderr)
            return 1
        missing = missing_weights(name, args.weights_dir)
        if missing:
            print("error: missing weights:\n  " + "\n  ".join(missing), file=sys.stderr)
            return 1
        method = build_method(name, **options)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:
        report = super_resolve_files(
            files, args.output, method, root=root, seed=args.seed, bs=args.bs, progress=not args.no_progress
        )
    except ValueError as err:  # checked before anything is written (e.g. an output over an input)
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path, note in report.notes:
        if "NOT fully opaque" in note or "EXIF" in note:
            print(f"note: {path}: {note}", file=sys.stderr)
    for path, reason in report.failures:
        message = reason if reason.startswith(str(path)) else f"{path}: {reason}"
        print(f"error: {message}", file=sys.stderr)
    print(f"wrote {len(report.written)} image(s) to {args.output}; {len(report.failures)} failed")
    return 0 if report.ok else 1
