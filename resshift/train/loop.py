"""The training loop shared by every objective: AdamW, warm-up + cosine, EMA, accumulation, AMP, DDP.

* Learning rate: linear warm-up from 0 over ``warmup`` optimiser steps, then cosine from ``lr`` to
  ``min_lr`` at ``steps``.
* EMA of all floating-point parameters and buffers with decay ``min(ema_decay, (1 + n) / (10 + n))``
  after ``n`` updates (the usual warm-up, so short runs are not dominated by the initial weights);
  integer buffers are copied.
* Gradient accumulation over ``grad_accum`` micro-batches (under DDP the gradient all-reduce runs
  only on the last one); AMP (``autocast`` + ``GradScaler`` for fp16) only on CUDA.
* Checkpoint/resume: ``<out>/checkpoint/`` holds ``model.safetensors``, ``ema.safetensors``,
  ``optim.pt`` (optimiser, scheduler, scaler; read with ``weights_only=True``) and ``state.json``
  (step, elapsed time, loss history). Data and noise are pure functions of (seed, rank, step), so a
  resumed run continues exactly as an uninterrupted one would.
* DDP: launched by ``torchrun`` (``WORLD_SIZE`` > 1), backend gloo on CPU and NCCL on CUDA; every rank
  draws its own micro-batches (the rank is part of the data seed); rank 0 keeps the EMA and writes
  checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from resshift.atomic import atomic_dir
from resshift.seeding import derive_seed

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
EXPORT_DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class TrainSettings:
    """Optimisation settings (one Hydra ``train`` group)."""

    steps: int = 1000
    batch_size: int = 16  # per rank and micro-batch
    grad_accum: int = 1
    lr: float = 2e-4
    min_lr: float = 2e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 100
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    amp: str = "fp16"  # fp16 | bf16 | none; CUDA only
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    time_limit_min: float | None = None  # stop (and checkpoint) once this much training time has passed
    device: str = "cpu"
    threads: int | None = None


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a model's state (floating tensors averaged, others copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach().to(s.dtype), 1.0 - d)
            else:
                s.copy_(v)
        self.updates += 1

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(self.shadow)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group if launched by ``torchrun`` (``WORLD_SIZE`` > 1); gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@dataclass
class TrainState:
    step: int = 0
    elapsed_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Train ``objective``'s model on ``data`` (a :class:`resshift.train.data.PatchPairs`)."""

    def __init__(self, objective: Any, data: Any, settings: TrainSettings, out_dir: str | Path,
                 dist_info: DistInfo | None = None) -> None:
        self.objective = objective
        self.data = data
        self.s = settings
        self.out_dir = Path(out_dir)
        self.dist = dist_info or DistInfo()
        device = settings.device
        if device.startswith("cuda") and self.dist.world > 1:
            device = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(device)
        if settings.threads:
            torch.set_num_threads(int(settings.threads))
        torch.manual_seed(derive_seed(settings.seed, "init"))  # same initial weights on every rank
        self.model = objective.build_model().to(self.device)
        objective.to(self.device)
        self.ema = EMA(self.model, settings.ema_decay) if self.dist.is_main else None
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=tuple(settings.betas),
                                           weight_decay=settings.weight_decay)
        ratio = settings.min_lr / settings.lr if settings.lr > 0 else 1.0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, settings.warmup, settings.steps, ratio))
        self.amp = settings.amp if (self.device.type == "cuda" and settings.amp in AMP_DTYPES) else "none"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.state = TrainState()
        self.wrapped: nn.Module = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    # ----------------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=AMP_DTYPES[self.amp])

    def train_step(self) -> float:
        """One optimiser step over ``grad_accum`` micro-batches; returns the mean loss (this rank)."""
        s, step = self.s, self.state.step
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(s.grad_accum):
            hr, lr = self.data.batch(s.batch_size, step, self.dist.rank, micro)
            hr, lr = hr.to(self.device), lr.to(self.device)
            gen = torch.Generator()
            gen.manual_seed(derive_seed(s.seed, "noise", self.dist.rank, step, micro))
            last = micro == s.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.dist.world == 1 else self.wrapped.no_sync()
            with sync:
                with self._autocast():
                    per_sample, _ = self.objective.loss(self.wrapped, hr, lr, gen)
                loss = per_sample.float().mean() / s.grad_accum
                self.scaler.scale(loss).backward()
            total += float(loss.detach()) * 1.0
        if s.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.state.step += 1
        return total

    def _mean_over_ranks(self, value: float) -> float:
        if self.dist.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.dist.world

    def fit(self, log: Any = print, until: int | None = None) -> TrainState:
        """Train until ``steps`` (or the time limit, or step ``until``: an interruption that leaves a
        checkpoint); checkpoints every ``checkpoint_every`` steps."""
        s = self.s
        start = time.perf_counter() - self.state.elapsed_s
        running: list[float] = []
        last = s.steps if until is None else min(until, s.steps)
        while self.state.step < last:
            loss = self.train_step()
            running.append(loss)
            step = self.state.step
            elapsed = time.perf_counter() - start
            self.state.elapsed_s = elapsed
            if step % s.log_every == 0 or step == s.steps:
                mean = self._mean_over_ranks(sum(running) / len(running))
                running = []
                self.state.history.append({"step": step, "loss": mean, "lr": self.scheduler.get_last_lr()[0],
                                           "elapsed_s": round(elapsed, 2)})
                if self.dist.is_main:
                    log(f"step {step}/{s.steps} loss {mean:.5f} lr {self.scheduler.get_last_lr()[0]:.2e} "
                        f"{elapsed:.0f}s")
            out_of_time = s.time_limit_min is not None and elapsed > 60.0 * s.time_limit_min
            if self.dist.world > 1:
                flag = torch.tensor([1.0 if out_of_time else 0.0])
                dist.all_reduce(flag)
                out_of_time = bool(flag.item() > 0)
            if step % s.checkpoint_every == 0 or step in (s.steps, last) or out_of_time:
                self.save_checkpoint()
            if out_of_time:
                if self.dist.is_main:
                    log(f"time limit of {s.time_limit_min} min reached at step {step}")
                break
        return self.state

    # ----------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write the resumable state (rank 0), atomically (written beside, then renamed)."""
        if self.dist.is_main:
            from safetensors.torch import save_file

            with atomic_dir(self.checkpoint_dir) as tmp:
                self._write_checkpoint(tmp, save_file)
        if self.dist.world > 1:
            dist.barrier()

    def _write_checkpoint(self, tmp: Path, save_file: Callable[..., Any]) -> None:
        """The files of a resumable checkpoint, into the folder ``tmp``."""
        save_file({k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        save_file({k: v.contiguous().cpu() for k, v in self.ema.shadow.items()}, str(tmp / "ema.safetensors"))
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict()}, tmp / "optim.pt")
        state = {**asdict(self.state), "ema_updates": self.ema.updates, "settings": asdict(self.s)}
        (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")

    def resume(self) -> bool:
        """Load ``<out>/checkpoint`` if present (every rank); returns whether it did."""
        ckpt = self.checkpoint_dir
        if not (ckpt / "state.json").is_file():
            return False
        from safetensors.torch import load_file

        try:
            self.model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
            opt = torch.load(ckpt / "optim.pt", weights_only=True, map_location=self.device)
            info = json.loads((ckpt / "state.json").read_text())
        except Exception as err:  # noqa: BLE001 - name the folder whatever went wrong
            raise ValueError(f"{ckpt}: cannot resume from this checkpoint: {err}") from err
        self.optimizer.load_state_dict(opt["optimizer"])
        self.scheduler.load_state_dict(opt["scheduler"])
        self.scaler.load_state_dict(opt["scaler"])
        if self.ema is not None:
            self.ema.shadow = {k: v.to(self.device) for k, v in load_file(str(ckpt / "ema.safetensors")).items()}
            self.ema.updates = int(info["ema_updates"])
        self.state = TrainState(int(info["step"]), float(info["elapsed_s"]), list(info["history"]))
        return True

    def ema_model(self) -> nn.Module:
        """A copy of the model carrying the EMA weights (rank 0)."""
        import copy

        if self.ema is None:
            raise RuntimeError("only rank 0 keeps the EMA")
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model)
        return model.eval()
