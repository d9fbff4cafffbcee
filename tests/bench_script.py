"""The CPU benchmark script (``benchmarks/cpu_speed.py``, not part of the installed package), loaded
by path for the tests that run it on tiny networks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cpu_speed.py"


def cpu_speed() -> ModuleType:
    """The ``cpu_speed`` module (loaded once, registered in ``sys.modules``)."""
    if "cpu_speed" in sys.modules:
        return sys.modules["cpu_speed"]
    spec = importlib.util.spec_from_file_location("cpu_speed", SCRIPT)
    assert spec is not None and spec.loader is not None, f"cannot load {SCRIPT}"
    module = importlib.util.module_from_spec(spec)
    sys.modules["cpu_speed"] = module
    spec.loader.exec_module(module)
    return module
