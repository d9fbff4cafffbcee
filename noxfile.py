"""Developer and user entry points: `nox -s eval`, `nox -s tests`, `nox -s slow`, `nox -s lint`, `nox -s bench`,
`nox -s train`, `nox -s regression`, `nox -s browser`.

Every session installs the project (editable) into its own virtualenv, reused on later runs. On a
machine whose pip is configured with local PyTorch wheels (as this project's CI machine is), torch
and torchvision resolve to those; elsewhere pip takes the normal PyPI wheels (CUDA builds on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _install(session: nox.Session, extras: str = "test,gan") -> None:
    session.install("-e", f".[{extras}]")


def _fetch_niqe_parameters(session: nox.Session) -> None:
    """NIQE's MATLAB parameters (basicsr's sdist on PyPI, pinned SHA-256) into the metric weight folder, for
    the real-network and NIQE tests; where PyPI cannot be reached those tests skip with the reason."""
    session.run("resshift", "metrics", "fetch-weights", "--metrics", "niqe", success_codes=[0, 1])


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run (fast tests; `slow` ones are skipped)."""
    _install(session)
    _fetch_niqe_parameters(session)
    session.run("pytest", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Only the tests marked `slow` (full-size networks, long chains, whole-set statistics)."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def eval(session: nox.Session) -> None:  # noqa: A001 - the session name users type
    """Run an evaluation (Hydra overrides after `--`), then write its report.

    With no arguments: the shipped small models and bicubic on the embedded set and the held-out
    ImageNet split (eval/experiment/embedded_default.yaml), reported in runs/embedded-default/report/.
    """
    _install(session)
    args = session.posargs or ["-m", "+experiment=embedded_default"]
    session.run("python", "-m", "resshift.runner.app", *args)


@nox.session
def browser(session: nox.Session) -> None:
    """The report page in a real headless Chromium (tests marked `browser`); installs Debian's `chromium`
    with apt-get when it is missing (as root, or through sudo), and skips with the reason where it cannot.
    The test's screenshot is kept in artefacts/browser/."""
    import shutil

    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        sudo = [] if hasattr(os, "geteuid") and os.geteuid() == 0 else ["sudo", "-n"]
        if not shutil.which("apt-get") or (sudo and not shutil.which("sudo")):
            session.skip("chromium is missing and cannot be installed here (no apt-get, or no root/sudo)")
        try:
            session.run(*sudo, "apt-get", "update", "-qq", external=True)
            session.run(*sudo, "apt-get", "install", "-y", "--no-install-recommends", "chromium", external=True)
        except nox.command.CommandFailed:
            session.skip("chromium is missing and `apt-get install chromium` failed")
    _install(session)
    session.run("pytest", "-m", "browser", "-rs", *session.posargs,
                env={"RESSHIFT_TEST_ARTEFACTS": os.path.join(os.getcwd(), "artefacts", "browser")})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package and the tests; import-linter over the import layers (pyproject.toml)."""
    session.install("ruff>=0.5", "import-linter>=2.1")
    session.run("ruff", "check", "resshift", "tests", "benchmarks", "noxfile.py")
    session.install("-e", ".", "--no-deps")
    session.run("lint-imports")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; never part of the test run. In order: the pytest-benchmark files,
    `python benchmarks/cpu_speed.py` (reference vs fast path, the v3 chain's per-component breakdown next to
    the measured GEMM/conv ceilings, the 1024x1024 decode's and a whole 4000x3000-LR run's peak RSS;
    arguments after `--` replace these defaults), then the side-by-side check against the official
    code (`../shared/anchors/speed_vs_official.py`, where the shared folder is present; its exit
    status 1 = goal ratio not reached, reported, not an error of the session)."""
    _install(session)
    session.run("pytest", "benchmarks", "-m", "", "--benchmark-only", success_codes=[0, 5])  # 5: none collected
    session.run("python", "benchmarks/cpu_speed.py", *(session.posargs or ["--memory", "--run-memory", "4000x3000"]))
    shared = Path(os.environ.get("RESSHIFT_SHARED", Path(__file__).resolve().parent.parent / "shared"))
    anchor = shared / "anchors" / "speed_vs_official.py"
    if anchor.is_file():
        session.run("python", str(anchor), "--rounds", "5", "--min-ratio", "1.5", success_codes=[0, 1])
    else:
        session.log(f"{anchor} not found: side-by-side check against the official code skipped")


@nox.session
def train(session: nox.Session) -> None:
    """Train a model (Hydra overrides after `--`, e.g. `nox -s train -- model=sr3`); configs in eval/train/."""
    _install(session)
    session.run("python", "-m", "resshift.train.app", *session.posargs)


@nox.session
def regression(session: nox.Session) -> None:
    """Evaluate the shipped small models on a fixed small set and compare with the committed baseline."""
    _install(session)
    session.run("python", "-m", "resshift.runner.regression", *session.posargs)
