"""Keep metric code from changing process-wide state that SR outputs or timings depend on.

Some pyiqa versions reset the global torch/NumPy/Python seeds when a metric is built or called
(0.1.10, 0.1.11) or set ``cudnn.deterministic``/``cudnn.benchmark`` globally in the constructor
(0.1.13-0.1.15). The runner computes metrics in a separate phase after SR, and every pyiqa
construction and call additionally runs inside :func:`preserve_global_state`, which snapshots and
restores that state.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def capture_global_state() -> dict[str, Any]:
    """Snapshot of the global RNGs and backend flags that third-party code is known to touch."""
    state: dict[str, Any] = {
        "torch_rng": torch.random.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
        "cudnn_enabled": torch.backends.cudnn.enabled,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "grad_enabled": torch.is_grad_enabled(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_state(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_global_state` recorded."""
    torch.random.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    torch.backends.cudnn.enabled = state["cudnn_enabled"]
    torch.backends.cudnn.benchmark = state["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = state["cudnn_deterministic"]
    torch.backends.cudnn.allow_tf32 = state["cudnn_allow_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = state["matmul_allow_tf32"]
    torch.set_float32_matmul_precision(state["float32_matmul_precision"])
    torch.use_deterministic_algorithms(
        state["deterministic_algorithms"], warn_only=state["deterministic_warn_only"]
    )
    torch.set_grad_enabled(state["grad_enabled"])
    if "cuda_rng" in state:
        torch.cuda.set_rng_state_all(state["cuda_rng"])


@contextlib.contextmanager
def preserve_global_state() -> Iterator[None]:
    """Run a block and undo any change it made to global RNG states and cuDNN/TF32/determinism flags."""
    state = capture_global_state()
    try:
        yield
    finally:
        restore_global_state(state)
