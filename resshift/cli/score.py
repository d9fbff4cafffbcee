"""``resshift score``: `resshift score SR_DIR --dataset NAME` / `--gt GT_DIR --lr LR_DIR`: score outputs made elsewhere.

One run of the ``outputs`` method (:mod:`resshift.methods.outputs`) through the same runner as every
method, so the run folder holds the same ``per_image.csv``, ``summary.json``/``summary.md`` and can
go into ``resshift report`` and ``resshift compare`` with any other run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _default_metrics() -> list[str]:
    """The metrics of the evaluation config (``eval/config.yaml``), the one home of that list."""
    import yaml

    from resshift.paths import PROJECT_ROOT

    return list(yaml.safe_load((PROJECT_ROOT / "eval" / "config.yaml").read_text(encoding="utf-8"))["metrics"])


def spec_for(args: argparse.Namespace):
    """The :class:`resshift.runner.run.RunSpec` of a ``score`` command line."""
    from resshift.runner.run import RunSpec

    if args.dataset and args.gt:
        raise SystemExit("give either --dataset NAME or --gt GT_DIR --lr LR_DIR, not both")
    if args.gt:
        if not args.lr:
            raise SystemExit("--gt needs --lr LR_DIR too: each SR image is checked against scale x its LR "
                             "image, and the LR-referenced metrics need the LR inputs")
        gt, lr = Path(args.gt).expanduser().resolve(), Path(args.lr).expanduser().resolve()
        dataset, dataset_params = "paired-folder", {"root": str(gt.parent), "lr": str(lr), "hr": str(gt)}
    elif args.dataset:
        dataset, dataset_params = args.dataset, ({"root": args.root} if args.root else {})
    else:
        raise SystemExit("say what to score against: --dataset NAME (a data-set card) or --gt GT_DIR --lr LR_DIR")
    sr_dir = Path(args.sr_dir).expanduser()
    if not sr_dir.is_dir():
        raise SystemExit(f"error: {sr_dir}: no such folder of SR images")
    label = args.label or sr_dir.resolve().name
    if args.metrics is not None and not [m for m in args.metrics.split(",") if m.strip()]:
        raise SystemExit("error: --metrics names no metric; leave it out for the default list")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else _default_metrics()
    params = {"root": str(Path(args.sr_dir).expanduser().resolve()), "suffix": args.suffix, "nfe": args.nfe,
              "source": args.source}
    spec = RunSpec(
        run_dir=Path(args.out or "."), method="outputs", method_params=params, dataset=dataset,
        dataset_params=dataset_params, metrics=metrics, device=args.device, limit=args.limit,
        batch_size=args.metric_batch,
        setting={"label": label, "reference": args.reference},
        config={"command": "score", "method": {"name": "outputs", "label": label, "reference": args.reference,
                                               "params": params},
                "dataset": {"name": dataset, "params": dataset_params}, "metrics": metrics},
    )
    if not args.out:  # named like the Hydra app's run folders: <label>__<dataset>__<config fingerprint>
        from resshift.runner.identity import config_fingerprint

        fp = config_fingerprint(method={"name": "outputs", "params": params},
                                dataset={"name": dataset, "params": dataset_params}, seed=spec.seed,
                                limit=spec.limit, select=None, device=spec.device, dtype=spec.dtype)
        spec.run_dir = Path("runs") / f"{label}__{dataset}__{fp}"
    return spec


def _score(args: argparse.Namespace) -> int:
    from resshift.runner.run import REFUSALS, run

    try:
        spec = spec_for(args)
        summary = run(spec)
    except REFUSALS as err:
        print(f"error: {err}", file=sys.stderr)  # e.g. the folder holds scores of other files, a missing folder
        return 2
    print(spec.folder.summary_md_file.read_text(encoding="utf-8"))
    if args.report:
        from resshift.reports import write_report

        print(f"report: {write_report([spec.run_dir], spec.run_dir / 'report')}")
    print(f"run folder: {spec.run_dir}")
    return 0 if summary.get("n_failed", 0) == 0 else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a folder of SR images made elsewhere (per-image CSV, summary)")
    p.add_argument("sr_dir", help="folder of super-resolved images, named like the data set's images")
    p.add_argument("--dataset", help="data-set card to score against (e.g. realset65, imagenet-test)")
    p.add_argument("--root", help="folder of that data set (default: mirror, then cache)")
    p.add_argument("--gt", help="instead of --dataset: folder of ground-truth images (with --lr)")
    p.add_argument("--lr", help="folder of the LR inputs the SR images were made from (with --gt)")
    p.add_argument("--label", help="method name in tables (default: the folder's name)")
    p.add_argument("--nfe", type=int, default=None, help="network evaluations per image, as you declare it")
    p.add_argument("--source", default=None, help="where the images come from (code, commit, checkpoint)")
    p.add_argument("--reference", default=None, help="published row to compare with (reference_numbers.csv)")
    p.add_argument("--suffix", default="", help="what the other code appended to every image name")
    p.add_argument("--metrics", default=None, help="comma-separated metric names (default: eval/config.yaml's)")
    p.add_argument("--device", default="cpu", help="device for the metrics")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (by name)")
    p.add_argument("--metric-batch", type=int, default=8, help="images per metric batch")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="run folder (default: runs/LABEL__DATASET__FINGERPRINT)")
    p.add_argument("--report", action="store_true", help="also write the report of this run")
    p.set_defaults(func=_score)
