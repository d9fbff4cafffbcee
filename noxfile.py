"""Developer and user entry points: `nox -s eval`, `nox -s tests`, `nox -s slow`, `nox -s lint`, `nox -s bench`.

Every session installs the project (editable) into its own virtualenv, reused on later runs. On a
machine whose pip is configured with local PyTorch wheels (as this project's CI machine is), torch
and torchvision resolve to those; elsewhere pip takes the normal PyPI wheels (CUDA builds on Linux).
"""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run (fast tests; `slow` ones are skipped)."""
    _install(session)
    session.run("pytest", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Only the tests marked `slow` (full-size networks, long chains, whole-set statistics)."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def eval(session: nox.Session) -> None:  # noqa: A001 - the session name users type
    """Run an evaluation (Hydra overrides after `--`), then write its report."""
    _install(session)
    session.run("python", "-m", "resshift.runner.app", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package and the tests."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "resshift", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed benchmarks (pytest-benchmark, then the ResShift reference-vs-fast script); never part of
    the test run. Arguments after `--` go to `python -m resshift.bench` (e.g. `--memory`)."""
    _install(session)
    session.run("pytest", "benchmarks", "-m", "", "--benchmark-only", success_codes=[0, 5])  # 5: none collected
    session.run("python", "-m", "resshift.bench", *session.posargs)
