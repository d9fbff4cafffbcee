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
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resshift.paths import PROJECT_ROOT
from resshift.runfolder import RunFolder
from resshift.runner.identity import RunFolderBusy, RunIdentityError, config_fingerprint, image_names
from resshift.runner.run import RunSpec, run

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
    return config_fingerprint(method=node("method") or {}, dataset=node("dataset") or {}, seed=node("seed"),
                              limit=node("limit"), select=select, device=node("hardware.device"),
                              dtype=node("hardware.dtype"))


if not OmegaConf.has_resolver("run_fingerprint"):
    OmegaConf.register_new_resolver("run_fingerprint", _run_fingerprint)


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
        seed=int(container.get("seed", 12345)),
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


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    spec = spec_from_config(cfg, run_dir)
    from resshift.data.sources import DatasetNotAvailable

    try:
        summary = run(spec)
    except DatasetNotAvailable as err:
        if not cfg.get("skip_unavailable", False):
            raise
        record_skipped(run_dir, spec, str(err))
        return
    except (RunIdentityError, RunFolderBusy) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    RunFolder(run_dir).clear_skipped()  # a set that was skipped before is there now
    if spec.rank != 0:  # rank 0 merges the shards and reports
        return
    log.info("run folder: %s", run_dir)
    print(RunFolder(run_dir).summary_md_file.read_text(encoding="utf-8"))
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.get("report") and not multirun:  # sweeps: one report at the end
        from resshift.reports import write_report

        out = write_report([run_dir], run_dir / "report")
        print(f"report: {out}")
    if summary.get("n_failed") and not multirun:  # a sweep reports all its failures at its end
        print(f"error: {summary['n_failed']} of {summary['n_images']} images failed in {run_dir} "
              "(listed in summary.md)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
