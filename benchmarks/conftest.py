"""Speed benchmarks (pytest-benchmark): `nox -s bench` or `pytest benchmarks --benchmark-only`.

Never part of the test run (``testpaths`` is ``tests``). Figures are stored with
``--benchmark-autosave`` under ``.benchmarks/`` and compared with ``--benchmark-compare``.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
