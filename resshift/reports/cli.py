"""`resshift report RUN...` and `resshift compare BASELINE NEW`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: What a report or comparison of unusable input raises (a missing folder, no finished run, an unreadable or
#: unknown-schema summary, a baseline without runs): printed as ``error: ...`` with exit code 2.
INPUT_ERRORS = (FileNotFoundError, ValueError, KeyError)


def _input_error(err: Exception) -> int:
    """Print ``error: ...`` for one of :data:`INPUT_ERRORS` (a KeyError's message without its quotes); exit code 2."""
    print(f"error: {err.args[0] if isinstance(err, KeyError) and err.args else err}", file=sys.stderr)
    return 2


def _report(args: argparse.Namespace) -> int:
    from resshift.reports import write_report

    try:
        out = write_report(args.runs, args.out, title=args.title, view_limit=args.view_limit)
    except INPUT_ERRORS as err:
        return _input_error(err)
    print(out)
    print(out.with_name("report.html"))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from resshift.reports.compare import compare_results, load_results, save_baseline

    try:
        if args.save_baseline:
            print(save_baseline([args.new], args.baseline))
            return 0
        tolerances = {}
        for item in args.tolerance or []:
            name, _, value = item.partition("=")
            try:
                tolerances[name] = float(value)
            except ValueError:
                raise ValueError(f"--tolerance {item!r}: give METRIC=VALUE with a number") from None
        result = compare_results(load_results(args.baseline), load_results(args.new), tolerances=tolerances,
                                 max_runtime_ratio=args.max_runtime_ratio or None)
    except INPUT_ERRORS as err:
        return _input_error(err)
    print(result.to_markdown())
    print("REGRESSION" if result.failed else "no regression")
    return 1 if result.failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write report.md and report.html (tables with intervals and paired tests, "
                       "published-number comparison, plots, per-image comparison view) for runs")
    p.add_argument("runs", nargs="+", help="run folders, or folders containing runs")
    p.add_argument("-o", "--out", type=Path, default=Path("reports/latest"), help="output folder")
    p.add_argument("--title", default="Evaluation report")
    p.add_argument("--view-limit", type=int, default=None, metavar="N",
                   help="comparison-view crops for at most N images per data set (default: all)")
    p.set_defaults(func=_report)

    c = sub.add_parser("compare", help="exit non-zero when metrics move beyond tolerance or runtime regresses")
    c.add_argument("baseline", help="baseline: run folder(s) root or a results CSV")
    c.add_argument("new", help="new results: run folder(s) root or a results CSV")
    c.add_argument("--tolerance", action="append", metavar="METRIC=VALUE", help="override a tolerance band")
    c.add_argument("--max-runtime-ratio", type=float, default=1.5,
                   help="fail when new/old median ms per image exceeds this (0 disables)")
    c.add_argument("--save-baseline", action="store_true",
                   help="instead of comparing, write the runs under NEW as the baseline CSV BASELINE")
    c.set_defaults(func=_compare)
