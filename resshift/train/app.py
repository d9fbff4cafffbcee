"""Hydra entry point of a training run: ``python -m resshift.train.app [model=sr3] [overrides]``.

Config tree: ``eval/train/`` (``config.yaml`` + ``model/*.yaml``). Under ``torchrun`` every process
trains on its own micro-batches and rank 0 writes checkpoints and the exported model. A rerun with
the same ``out_dir`` resumes from its checkpoint.

At the end rank 0 exports the EMA weights as ``<export.dir>/<name>.safetensors`` (``export.dtype``)
and ``<name>.json``: the resolved config, parameter count, data split (file and SHA-256), steps,
wall time, final loss and the command that retrains the model.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from resshift.paths import PROJECT_ROOT, shared_dir

log = logging.getLogger(__name__)

CONFIG_DIR = str(PROJECT_ROOT / "eval" / "train")
DEFAULT_SOURCE = "datasets/imagenet-samples"  # under the shared folder


def _project_path(p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


def build_objective(model_cfg: dict[str, Any]) -> Any:
    """The objective described by a ``model`` config group."""
    from resshift.train.objectives import GaussianObjective, ResShiftObjective

    kind = model_cfg["objective"]
    if kind == "resshift":
        from resshift.weights.formats import schedule_from_description

        schedule = schedule_from_description(dict(model_cfg["schedule"]))
        autoencoder = None
        if model_cfg.get("space", "pixel") == "latent":
            from resshift.weights import load_autoencoder

            ae = dict(model_cfg.get("autoencoder") or {})
            autoencoder = load_autoencoder(ae.get("checkpoint"), params=ae.get("params"))
        return ResShiftObjective(schedule, dict(model_cfg["net"]), autoencoder=autoencoder,
                                 lpips_weight=float(model_cfg.get("lpips_weight", 0.0)),
                                 residual=bool(model_cfg.get("residual", False)))
    if kind == "gaussian":
        return GaussianObjective(dict(model_cfg["net"]), dict(model_cfg["schedule"]),
                                 conditional=bool(model_cfg.get("conditional", True)),
                                 prediction=str(model_cfg.get("prediction", "eps")))
    raise ValueError(f"unknown objective {kind!r} (known: resshift, gaussian)")


def prepare_split(data_cfg: dict[str, Any], root: Path) -> tuple[Any, Path]:
    """Read the split file, or make it from ``root`` if it does not exist yet."""
    from resshift.data.split import make_split, read_split, write_split
    from resshift.io import list_images

    path = _project_path(data_cfg["split"])
    if path.is_file():
        return read_split(path), path
    names = [p.name for p in list_images(root)]
    split = make_split(names, int(data_cfg["heldout"]), source=str(data_cfg.get("source_label") or root.name))
    return split, write_split(split, path)


def run_training(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | None:
    """Train as configured; returns the export record on rank 0 (``None`` on other ranks)."""
    from resshift.provenance import file_sha256
    from resshift.train.data import PatchPairs, load_images
    from resshift.train.loop import EXPORT_DTYPES, Trainer, TrainSettings, init_distributed

    c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    settings = TrainSettings(**c["train"])
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    dinfo = init_distributed(settings.device)
    data_cfg = c["data"]
    root = Path(data_cfg["root"]).expanduser() if data_cfg.get("root") else shared_dir() / DEFAULT_SOURCE
    if not root.is_dir():
        raise FileNotFoundError(f"training images not found: {root} (set data.root=DIR)")
    t0 = time.perf_counter()
    for turn in ("main", "others"):  # rank 0 writes the split file and the image cache, then the others read
        if (turn == "main") == dinfo.is_main:
            split, split_path = prepare_split(data_cfg, root)
            train_names = list(split.train)
            if data_cfg.get("limit"):
                train_names = train_names[: int(data_cfg["limit"])]
            names, images = load_images(root, train_names, int(data_cfg["short_side"]))
        if dinfo.world > 1:
            torch.distributed.barrier()
    data_s = time.perf_counter() - t0
    data = PatchPairs(images, patch=int(data_cfg["patch"]), degradation=str(data_cfg["degradation"]),
                      seed=settings.seed)
    objective = build_objective(c["model"])
    trainer = Trainer(objective, data, settings, out_dir, dinfo)
    resumed = bool(c.get("resume", True)) and trainer.resume()
    if dinfo.is_main:
        log.info("%s: %d parameters, %d training images (%.1fs to load), %s", c["name"],
                 trainer.parameter_count(), len(names), data_s, f"resumed at step {trainer.state.step}"
                 if resumed else "from scratch")
    state = trainer.fit(log=log.info)
    if not dinfo.is_main:
        return None
    export_dir = _project_path(c["export"]["dir"])
    name = c["name"]
    weights = export_dir / f"{name}.safetensors"
    tail = [h["loss"] for h in state.history[-5:]]
    record = {
        "name": name,
        "kind": objective.kind,
        "weights": weights.name,
        "parameters": trainer.parameter_count(),
        "export_dtype": c["export"]["dtype"],
        "steps": state.step,
        "steps_planned": settings.steps,
        "images_seen": state.step * settings.batch_size * settings.grad_accum * dinfo.world,
        "wall_time_s": round(state.elapsed_s, 1),
        "data_load_s": round(data_s, 1),
        "final_loss": sum(tail) / len(tail) if tail else None,
        "final_loss_note": "mean training loss of the last 5 logged intervals (EMA weights are exported)",
        "world_size": dinfo.world,
        "threads": torch.get_num_threads(),
        "device": settings.device,
        "split": {"file": str(_rel(split_path)), "sha256": file_sha256(split_path), "source": str(root),
                  "train_images": len(names), "heldout_images": len(split.heldout)},
        "config": c,
        "loss_history": state.history,
        "command": retrain_command(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    extra = {"training": {k: record[k] for k in ("name", "steps", "wall_time_s", "final_loss", "images_seen")}}
    objective.export(trainer.ema_model(), weights, extra, dtype=EXPORT_DTYPES[c["export"]["dtype"]])
    record["weights_sha256"] = file_sha256(weights)
    (export_dir / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    log.info("exported %s (%d steps, %.0fs)", weights, state.step, state.elapsed_s)
    return record


def _rel(p: Path) -> Path:
    try:
        return p.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return p


def retrain_command() -> str:
    """The command line of this run (``python -m resshift.train.app`` + its overrides)."""
    return " ".join(["python", "-m", "resshift.train.app", *sys.argv[1:]])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    out_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    run_training(cfg, out_dir)


if __name__ == "__main__":
    main()
