"""``resshift weights ...``: list the weights table, fetch, hash and verify files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resshift import weights as W
from resshift.provenance import file_sha256
from resshift.weights.metric_files import metric_weights_dir, weight_path
from resshift.weights.shipped import SMALL_MODELS_DIR
from resshift.weights.table import CACHE_FILES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="every weights file: list, fetch, hash, verify")
    sub = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    def dirs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", dest="cache_dir", default=None,
                       help="download cache / target folder (default: <resshift cache>/weights)")
        p.add_argument("--offline-dir", default=None, help="folder searched first for existing files")

    p = sub.add_parser("list", help="show the weights table (URL, SHA-256, licence, kind) and which files are present")
    dirs(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fetch", help="download checkpoints (default: every network the suite can fetch) and verify "
                                     "pinned hashes; an ncnn network's graph comes with it")
    p.add_argument("keys", nargs="*", metavar="KEY",
                   help=f"any of {', '.join(CACHE_FILES)} (default: those of {', '.join(W.CHECKPOINTS)} "
                        "with a download URL)")
    dirs(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--metric-weights-dir", default=None,
                   help="where metric weights go (default: $RESSHIFT_METRIC_WEIGHTS or the cache)")
    p.add_argument("--metrics", dest="with_metrics", action="store_true", default=None,
                   help="also fetch every metric's weights (the default when no KEY is given)")
    p.add_argument("--no-metrics", dest="with_metrics", action="store_false",
                   help="checkpoints only")
    p.set_defaults(func=_reports_unknown_keys(cmd_fetch))

    p = sub.add_parser("hash", help="print the SHA-256 of a file or a local checkpoint, to pin it")
    p.add_argument("target", metavar="PATH|KEY")
    dirs(p)
    p.set_defaults(func=cmd_hash)

    p = sub.add_parser("verify", help="check local files against pinned hashes and the architecture")
    p.add_argument("keys", nargs="*", metavar="KEY", help="default: every registry entry present")
    dirs(p)
    p.add_argument("--no-keys", dest="check_keys", action="store_false",
                   help="skip loading the files to check their keys and shapes")
    p.set_defaults(func=_reports_unknown_keys(cmd_verify))


class _UnknownKey(Exception):
    pass


def _keys(requested: list[str], default: tuple[str, ...] | None = None) -> list[str]:
    unknown = [k for k in requested if k not in W.CHECKPOINTS and k not in CACHE_FILES]
    if unknown:
        raise _UnknownKey(f"unknown checkpoint key(s) {unknown}; known: {', '.join(CACHE_FILES)}")
    return requested or list(CACHE_FILES if default is None else default)


def _reports_unknown_keys(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _UnknownKey as exc:
            print(exc, file=sys.stderr)
            return 2

    return run


def _where(entry: W.WeightFile, args: argparse.Namespace) -> str:
    """The local copy of a table row, or ``-``."""
    if entry.key in CACHE_FILES:
        return str(W.find_local(entry, args.offline_dir, args.cache_dir) or "-")
    if entry.kind == "metric":
        path = weight_path(entry.key)
        return str(path) if path.is_file() else "-"
    if entry.kind == "small-model":
        path = SMALL_MODELS_DIR / entry.relpath
        return str(path) if path.is_file() else "-"
    return "(Hugging Face cache)"


def cmd_list(args: argparse.Namespace) -> int:
    print(f"{'key':20} {'kind':11} {'file':40} {'sha256':10} local")
    for entry in W.FILES.values():
        pinned = entry.sha256[:8] + ".." if entry.sha256 else "(unpinned)"
        print(f"{entry.key:20} {entry.kind:11} {entry.filename:40} {pinned:10} {_where(entry, args)}")
        print(f"{'':20} {entry.description}")
        print(f"{'':20} {'from' if entry.package else 'url'}: {entry.origin}")
        if entry.note:
            print(f"{'':20} note: {entry.note}")
        print(f"{'':20} licence: {entry.licence}")
    print(f"\ncheckpoint cache: {W.weights_cache_dir(args.cache_dir)}")
    print(f"metric weights: {metric_weights_dir()}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    failures = 0
    requested = _keys(args.keys, tuple(k for k, e in W.CHECKPOINTS.items() if e.downloadable))
    for key in [*requested, *(W.get_entry(k).graph for k in requested if W.get_entry(k).graph)]:
        try:
            path = W.resolve_checkpoint(key, cache_dir=args.cache_dir, offline_dir=args.offline_dir,
                                        progress=not args.quiet)
        except (W.WeightsError, OSError) as exc:
            print(f"{key}: FAILED: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"{key}: {path}")
    with_metrics = args.with_metrics if args.with_metrics is not None else not args.keys
    if with_metrics:
        from resshift.cli.metrics import _fetch as fetch_metric_files

        failures += fetch_metric_files(argparse.Namespace(dir=args.metric_weights_dir, metrics=None)) != 0
    return 1 if failures else 0


def cmd_hash(args: argparse.Namespace) -> int:
    target = Path(args.target)
    if target.is_file():
        print(f"{file_sha256(target)}  {target}")
        return 0
    if args.target not in CACHE_FILES:
        print(f"{args.target}: neither a file nor a checkpoint key ({', '.join(CACHE_FILES)})",
              file=sys.stderr)
        return 2
    path = W.find_local(args.target, args.offline_dir, args.cache_dir)
    if path is None:
        entry = W.get_entry(args.target)
        print(f"{args.target}: not present locally; fetch it first ({W.source_url(entry)})", file=sys.stderr)
        return 1
    digest = file_sha256(path)
    print(f"{digest}  {path}")
    hint = f"# pin with: FILES[{args.target!r}] sha256={digest!r} (resshift/weights/table.py)"
    print(hint, file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    bad = 0
    for key in _keys(args.keys):
        entry = W.get_entry(key)
        path = W.find_local(entry, args.offline_dir, args.cache_dir)
        if path is None:
            print(f"{key:6} missing   (expected {W.weights_cache_dir(args.cache_dir) / entry.relpath})")
            bad += bool(args.keys)
            continue
        digest = file_sha256(path)
        if not entry.sha256:
            status = f"unpinned  sha256={digest}"
        elif digest == entry.sha256:
            status = "ok        sha256 matches"
        else:
            status = f"MISMATCH  sha256={digest}, pinned {entry.sha256}"
            bad += 1
        if args.check_keys:
            try:
                if entry.kind == "spandrel" and entry.format == "ncnn":
                    from resshift.methods.spandrel_sr import load_ncnn_descriptor

                    graph = W.find_local(entry.graph, args.offline_dir, args.cache_dir)
                    if graph is None:
                        raise W.CheckpointNotFoundError(f"its graph {entry.graph!r} is missing")
                    load_ncnn_descriptor(path, graph, entry.config)
                elif entry.kind == "spandrel":
                    from resshift.methods.spandrel_sr import load_descriptor

                    load_descriptor(path, entry.config)
                elif entry.kind == "graph":
                    from resshift.weights.ncnn import read_param

                    read_param(path)
                else:
                    W.check_state_dict(W.architecture_for(entry), W.load_state_dict(path), str(path))
                status += "; keys ok"
            except W.WeightsError as exc:
                status += f"; BAD FILE: {exc}"
                bad += 1
        print(f"{key:6} {status}  {path}")
    return 1 if bad else 0
