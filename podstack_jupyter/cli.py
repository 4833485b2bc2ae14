"""The ``podstack`` command.

``podstack --help`` lists the commands; ``podstack COMMAND --help`` explains one.
Each command lives beside the plane it drives: a module listed in ``COMMANDS``
(e.g. ``podstack_jupyter.tracking._cli``) that defines ``add_parser(subparsers)``,
which adds its parser and sets ``func(args) -> int | None`` as its default. The
command modules are imported only to build the parser, so a plane's heavy imports
stay inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "COMMANDS"]

#: command modules, in the order ``--help`` lists them
COMMANDS = [
    __name__,  # podstack info
    "podstack_jupyter.tracking._cli",  # podstack runs, podstack experiments
    "podstack_jupyter.models._cli",  # podstack models
    "podstack_jupyter.artifacts._cli",  # podstack artifacts
]


def add_parser(subparsers) -> None:
    """``podstack info``: the version and where things are kept (the terminal twin of ``%podstack``)."""
    from .config import describe

    parser = subparsers.add_parser("info", help="show the version and where podstack keeps things",
                                   description=describe.__doc__)
    parser.set_defaults(func=lambda args: print(describe()))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="podstack",
        description="podstack-jupyter: GPU sessions, experiment tracking and a model registry for notebooks.",
        epilog="Run 'podstack COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"podstack-jupyter {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``podstack`` console script; returns the exit status."""
    from .errors import PodstackError

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except PodstackError as exc:
        print(f"podstack: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `podstack runs list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
