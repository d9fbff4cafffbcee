"""Running a Hydra app (``@hydra.main``) from a sub-command, with the overrides passed through."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def add_hydra_command(subparsers: argparse._SubParsersAction, name: str, help_text: str,
                      app: Callable[[], Callable[[], object]]) -> None:
    """Add ``resshift NAME [OVERRIDES ...]``: ``app()`` returns the ``@hydra.main`` function, which
    runs with ``OVERRIDES`` (and Hydra flags such as ``-m`` / ``--cfg job``) as its command line."""
    p = subparsers.add_parser(name, help=help_text,
                              description=f"{help_text}. Arguments are Hydra overrides, e.g. key=value.")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE")  # filled by resshift.cli.main, unparsed

    def run(args: argparse.Namespace) -> int:
        main = app()
        saved = sys.argv
        sys.argv = [f"resshift {name}", *args.overrides]
        try:
            main()
        except SystemExit as exc:  # Hydra exits on --help, --cfg and errors
            return int(exc.code or 0) if not isinstance(exc.code, str) else 1
        finally:
            sys.argv = saved
        return 0

    p.set_defaults(func=run)
