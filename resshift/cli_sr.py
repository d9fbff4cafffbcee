"""``resshift sr``: super-resolve an image or a folder with a released ResShift model.

Paper-table equivalents (official README commands):

* ImageNet-Test (64x64 LR):  ``resshift sr LQ_DIR -o OUT --model v1 --chop-size 64 --chop-stride 64 --bs 64``
* real-world sets:           ``resshift sr LQ_DIR -o OUT --model v1 --chop-size 512 --chop-stride 448``
  (journal tables: ``--model v3``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from resshift.methods.tiling import default_stride

MODELS = ("v1", "v2", "v3", "bicsr")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sr",
        help="super-resolve an image or folder (x4) with ResShift",
        description="Super-resolve an image file or every image in a folder (x4) with a ResShift model; "
        "writes OUT/<stem>.png.",
    )
    p.add_argument("input", type=Path, help="image file or folder of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--model", choices=MODELS, default="v3", help="released checkpoint (default: v3)")
    p.add_argument("--chop-size", type=int, default=512, help="tile side in LR pixels (default: 512)")
    p.add_argument(
        "--chop-stride",
        type=int,
        default=None,
        help="tile stride in LR pixels (default: the official one: 512->448, 256->224, 64->48)",
    )
    p.add_argument("--tile-batch", type=int, default=1, help="tiles per network call (default: 1)")
    p.add_argument("--bs", type=int, default=1, help="images per batch, same-size images only (default: 1)")
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
        help="precision of the VQ autoencoder alone (default: as --dtype); fp16/bf16 need CUDA",
    )
    p.add_argument("--weights-dir", type=Path, default=None, help="folder with the checkpoints (offline use)")
    p.add_argument("--recursive", action="store_true", help="also read sub-folders")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_sr)


def run_sr(args: argparse.Namespace) -> int:
    from resshift.methods.registry import build_method
    from resshift.pipeline import collect_inputs, super_resolve_files

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "fp16" if torch.device(device).type == "cuda" else "fp32"
    try:
        stride = args.chop_stride if args.chop_stride is not None else default_stride(args.chop_size)
        root, files = collect_inputs(args.input, recursive=args.recursive)
        if not files:
            print(f"error: {args.input}: no images found", file=sys.stderr)
            return 1
        method = build_method(
            f"resshift-{args.model}",
            chop_size=args.chop_size,
            chop_stride=stride,
            tile_batch=args.tile_batch,
            device=device,
            dtype=dtype,
            vq_dtype=args.vq_dtype,
            weights_dir=args.weights_dir,
        )
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    report = super_resolve_files(
        files, args.output, method, root=root, seed=args.seed, bs=args.bs, progress=not args.no_progress
    )
    for path, note in report.notes:
        if "NOT fully opaque" in note:
            print(f"note: {path}: {note}", file=sys.stderr)
    for path, reason in report.failures:
        message = reason if reason.startswith(str(path)) else f"{path}: {reason}"
        print(f"error: {message}", file=sys.stderr)
    print(f"wrote {len(report.written)} image(s) to {args.output}; {len(report.failures)} failed")
    return 0 if report.ok else 1
