"""``resshift metrics list | check | fetch-weights``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _names(arg: str | None) -> list[str] | None:
    return [n.strip() for n in arg.split(",") if n.strip()] if arg else None


def format_registry_table() -> str:
    """The registry as a Markdown table (name, FR/NR/LR with ``, set`` for set-level metrics, direction, range,
    version, backend, convention)."""
    from resshift.metrics.registry import METRICS

    lines = [
        "| metric | mode | better | range | version | backend | input convention |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in METRICS.values():
        lo, hi = spec.value_range
        better = spec.better
        level = ", set" if spec.set_level else ""
        lines.append(
            f"| {spec.name} | {spec.mode}{level} | {better} | [{lo:g}, {hi:g}] | {spec.version} | "
            f"{spec.backend_label()} | {spec.input_convention} |"
        )
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    print(format_registry_table())
    return 0


def _check(args: argparse.Namespace) -> int:
    from resshift.metrics.availability import unavailable_reason
    from resshift.metrics.registry import METRICS, get_spec
    from resshift.weights.metric_files import metric_weights_dir

    root = Path(args.dir) if args.dir else metric_weights_dir()
    names = _names(args.metrics) or list(METRICS)
    print(f"metric weight directory: {root}")
    missing = 0
    for name in names:
        reason = unavailable_reason(get_spec(name), root)
        missing += reason is not None
        print(f"{name:10s} {'available' if reason is None else 'unavailable: ' + reason}")
    return 1 if missing else 0


def _fetch(args: argparse.Namespace) -> int:
    from resshift.metrics.availability import fetch_metric_weights
    from resshift.weights.metric_files import metric_weights_dir

    root = Path(args.dir) if args.dir else metric_weights_dir()
    results = fetch_metric_weights(root, _names(args.metrics))
    for r in results:
        detail = f" sha256={r.sha256}" if r.sha256 else ""
        print(f"{r.status:10s} {r.key:20s} {r.path}{detail}")
        if r.message:
            print(f"           {r.message}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"{len(failed)} file(s) failed; the metrics that need them will be reported unavailable")
    else:
        print(f"done; on an offline machine set RESSHIFT_METRIC_WEIGHTS={root}")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="metric registry, availability and offline weights")
    msub = p.add_subparsers(dest="metrics_command", metavar="ACTION")

    q = msub.add_parser("list", help="table of every metric with its convention and source")
    q.set_defaults(func=_list)

    q = msub.add_parser("check", help="which metrics can run here (weights, packages); exit 1 if any cannot")
    q.add_argument("--dir", help="metric weight directory (default: $RESSHIFT_METRIC_WEIGHTS or the cache)")
    q.add_argument("--metrics", help="comma-separated names (default: all)")
    q.set_defaults(func=_check)

    q = msub.add_parser("fetch-weights", help="download every metric's weights into a directory (online)")
    q.add_argument("--dir", help="target directory (default: $RESSHIFT_METRIC_WEIGHTS or the cache)")
    q.add_argument("--metrics", help="comma-separated names (default: all)")
    q.set_defaults(func=_fetch)

    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])
