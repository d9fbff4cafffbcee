"""``resshift sr``: super-resolve image files with a released ResShift model (see :mod:`resshift.cli_sr`)."""

from resshift.cli_sr import register, run_sr

__all__ = ["register", "run_sr"]
