"""``resshift report`` / ``resshift compare``: reports over run folders (see :mod:`resshift.reports.cli`)."""

from resshift.reports.cli import register

__all__ = ["register"]
