"""Hydra entry point of an evaluation run: ``python -m resshift.runner.app [overrides]``.

The config tree lives in ``eval/`` at the project root. The run folder is
``<run.root>/<label>__<dataset>__<config fingerprint>`` (``${run_fingerprint:}``, 8 hex digits of
:func:`resshift.runner.identity.config_fingerprint`), so every configuration gets its own folder and
rerunning one resumes it. The process exits with 1 when any image failed (all rows are still written),
2 when the run could not start (the folder holds another configuration or is in use).

Under ``torchrun`` each process evaluates a deterministic shard of the images (``RANK`` /
``WORLD_SIZE``); rank 0 merges and reports. With ``skip_unavailable=true`` a data set that can be
neither found nor built is recorded in ``<run dir>/skipped.json`` (and listed by the report) instead
of failing the run.

``seeds=[1,2,3]`` runs the configuration once per seed, each in the run folder of that seed (the one
``seed=<s>`` alone gives, so each resumes on its own, exactly as the sweep ``-m seed=1,2,3``), then
writes one report over them (in the first seed's folder), whose "Seed stability" section gives CCSR's
L-STD and G-STD (:mod:`resshift.reports.stability`).
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from resshift.paths import PROJECT_ROOT
from resshift.runfolder import RunFolder
from resshift.runner.identity import config_fingerprint, image_names
from resshift.runner.run import REFUSALS, RunSpec, discard_unused, run

log = logging.getLogger(__name__)

CONFIG_DIR = str(PROJECT_ROOT / "eval")


def _run_fingerprint(*, _root_: DictConfig) -> str:
    """``${run_fingerprint:}``: the config fingerprint of the run being composed (folder-name suffix)."""
    def node(key: str) -> Any:
        value = OmegaConf.select(_root_, key)
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value

    select = OmegaConf.select(_root_, "select")
    select = OmegaConf.to_container(select, resolve=True) if select is not None and not isinstance(
        select, (str, int)) else select
    seeds = seed_list(node("seeds"))  # seeds=: Hydra's own folder is the first seed's run folder
    seed = seeds[0] if seeds else node("seed")
    return config_fingerprint(method=node("method") or {}, dataset=node("dataset") or {}, seed=seed,
                              limit=node("limit"), select=select, device=node("hardware.device"),
                              dtype=node("hardware.dtype"))


if not OmegaConf.has_resolver("run_fingerprint"):
    OmegaConf.register_new_resolver("run_fingerprint", _run_fingerprint)


def seed_list(value: Any) -> list[int] | None:
    """``seeds=`` as a list of distinct ints (one int is a list of one); None when not set.

    Raises ``ValueError`` for an empty list, a value that is not an integer, or a seed given twice.
    """
    if value is None:
        return None
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError("seeds=[] lists no seed; leave seeds unset (null) for one run with seed=")
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise ValueError(f"seeds={items}: seeds are integers, not {', '.join(map(repr, bad))}")
    if len(set(items)) != len(items):
        raise ValueError(f"seeds={items}: a seed is listed twice (each seed is one run folder)")
    return [int(v) for v in items]


def per_seed_configs(cfg: DictConfig, seeds: list[int]) -> list[tuple[DictConfig, Path]]:
    """``seeds=``: one copy of ``cfg`` per seed (``seed`` set to it, ``seeds`` unset) and its run folder
    ``<run.root>/<run.name>``, the folder the configuration with ``seed=<s>`` alone has: the same identity,
    so each seed resumes on its own. Raises ``ValueError`` when ``run.name`` names one folder for
    several seeds (an explicit name without ``${seed}`` or ``${run_fingerprint:}``)."""
    jobs = []
    for seed in seeds:
        one = copy.deepcopy(cfg)
        one.seed = seed
        one.seeds = None
        jobs.append((one, Path(os.path.abspath(Path(str(one.run.root), str(one.run.name))))))
    folders = [run_dir for _, run_dir in jobs]
    if len(set(folders)) != len(folders):
        raise ValueError(f"seeds={seeds}: run.name={cfg.run.name!r} is one folder for several seeds; leave "
                         "run.name at its default or put ${seed} in it")
    return jobs


def spec_from_config(cfg: DictConfig, run_dir: Path) -> RunSpec:
    """Translate the Hydra config into a :class:`RunSpec`."""
    container: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    method = container["method"]
    dataset = container["dataset"]
    hw = container["hardware"]
    setting = {k: v for k, v in method.get("params", {}).items() if k in ("steps", "chop_size", "chop_stride")}
    return RunSpec(
        run_dir=run_dir,
        method=method["name"],
        method_params=dict(method.get("params") or {}),
        dataset=dataset["name"],
        dataset_params=dict(dataset.get("params") or {}),
        metrics=list(container.get("metrics") or []),
        seed=container.get("seed", 12345),  # checked, with the other settings, by run.check_spec
        device=hw.get("device", "cpu"),
        dtype=hw.get("dtype", "fp32"),
        batch_size=int(hw.get("batch_size", 1)),
        warmup=int(hw.get("warmup", 1)),
        threads=hw.get("threads"),
        limit=container.get("limit"),
        select=image_names(container.get("select")),
        setting={"label": method.get("label", method["name"]), "reference": method.get("reference"), **setting},
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        config=container,
    )


def record_skipped(run_dir: Path, spec: RunSpec, reason: str) -> Path:
    """Write ``<run_dir>/skipped.json`` (method, label, dataset, reason) for a run that could not start."""
    record = {"method": spec.method, "label": spec.setting.get("label"), "dataset": spec.dataset, "reason": reason}
    path = RunFolder(run_dir).write_skipped(record)
    log.warning("skipped %s on %s: %s", record["label"], spec.dataset, reason)
    return path


def _discard_unused(run_dir: Path) -> None:
    """:func:`resshift.runner.run.discard_unused` for a folder Hydra made for this session: its records (``.hydra/``,
    the job's log) count as unused too."""
    log_name = f"{HydraConfig.get().job.name}.log" if HydraConfig.initialized() else ".hydra"
    discard_unused(run_dir, also=(".hydra", log_name))


def _run_one(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Run (or resume) the configuration ``cfg`` in ``run_dir`` and print its summary; None when the run
    was skipped (data set unavailable, ``skip_unavailable``) or this is not rank 0. Exits with 2 when the
    run cannot start (the folder holds another configuration or is in use)."""
    try:
        spec = spec_from_config(cfg, run_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        _discard_unused(run_dir)
        sys.exit(2)
    from resshift.data.sources import DatasetNotAvailable

    try:
        summary = run(spec)
    except DatasetNotAvailable as err:
        if not cfg.get("skip_unavailable", False):
            print(f"error: {err}", file=sys.stderr)
            _discard_unused(run_dir)
            sys.exit(2)
        record_skipped(run_dir, spec, str(err))
        return None
    except REFUSALS as err:
        print(f"error: {err}", file=sys.stderr)
        _discard_unused(run_dir)
        sys.exit(2)
    RunFolder(run_dir).clear_skipped()  # a set that was skipped before is there now
    if spec.rank != 0:  # rank 0 merges the shards and reports
        return None
    log.info("run folder: %s", run_dir)
    print(RunFolder(run_dir).summary_md_file.read_text(encoding="utf-8"))
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    seeds = seed_list(cfg.get("seeds"))
    try:
        jobs = [(cfg, Path(HydraConfig.get().runtime.output_dir))] if seeds is None else per_seed_configs(cfg, seeds)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finished = []
    for job_cfg, run_dir in jobs:
        summary = _run_one(job_cfg, run_dir)
        if summary is not None:
            finished.append((run_dir, summary))
    if not finished or HydraConfig.get().mode == RunMode.MULTIRUN:
        return  # a sweep writes one report at its end and then reports all its failures
    if cfg.get("report"):
        from resshift.reports import write_report

        title = "Evaluation report" if seeds is None else f"Evaluation report: seeds {', '.join(map(str, seeds))}"
        out = write_report([run_dir for run_dir, _ in finished], jobs[0][1] / "report", title=title)
        print(f"report: {out}")
    failed = [(run_dir, summary) for run_dir, summary in finished if summary.get("n_failed")]
    for run_dir, summary in failed:
        print(f"error: {summary['n_failed']} of {summary['n_images']} images failed in {run_dir} "
              "(listed in summary.md)", file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
