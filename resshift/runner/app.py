"""Hydra entry point of an evaluation run: ``python -m resshift.runner.app [overrides]``.

The config tree lives in ``eval/`` at the project root. Under ``torchrun`` each process evaluates a
deterministic shard of the images (``RANK`` / ``WORLD_SIZE``); rank 0 merges and reports. With
``skip_unavailable=true`` a data set that can be neither found nor built is recorded in
``<run dir>/skipped.json`` (and listed by the report) instead of failing the run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from resshift.paths import PROJECT_ROOT
from resshift.runner.run import RunSpec, run

log = logging.getLogger(__name__)

CONFIG_DIR = str(PROJECT_ROOT / "eval")


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
        select=container.get("select"),
        setting={"label": method.get("label", method["name"]), "reference": method.get("reference"), **setting},
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        config=container,
    )


SKIPPED_FILE = "skipped.json"


def record_skipped(run_dir: Path, spec: RunSpec, reason: str) -> Path:
    """Write ``<run_dir>/skipped.json`` (method, label, dataset, reason) for a run that could not start."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SKIPPED_FILE
    record = {"method": spec.method, "label": spec.setting.get("label"), "dataset": spec.dataset, "reason": reason}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    log.warning("skipped %s on %s: %s", record["label"], spec.dataset, reason)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    spec = spec_from_config(cfg, run_dir)
    from resshift.data.sources import DatasetNotAvailable

    try:
        run(spec)
    except DatasetNotAvailable as err:
        if not cfg.get("skip_unavailable", False):
            raise
        record_skipped(run_dir, spec, str(err))
        return
    (run_dir / SKIPPED_FILE).unlink(missing_ok=True)  # a set that was skipped before is there now
    if spec.rank != 0:  # rank 0 merges the shards and reports
        return
    log.info("run folder: %s", run_dir)
    print((run_dir / "summary.md").read_text(encoding="utf-8"))
    if cfg.get("report") and HydraConfig.get().mode != RunMode.MULTIRUN:  # sweeps: one report at the end
        from resshift.reports import write_report

        out = write_report([run_dir], run_dir / "report")
        print(f"report: {out}")


if __name__ == "__main__":
    main()
