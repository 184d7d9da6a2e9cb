"""The `venvlayers` command line: a thin layer over the Python API.

Each command parses options, calls one API function and renders the result. All
`VenvLayersError`s end here as one line on stderr and exit code 1; usage errors
exit 2 (click's convention).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from ..errors import VenvLayersError
from . import (  # noqa: F401  (command modules register on the app)
    build,
    common,
    deploy,
    distribution,
    lock,
    publish,
    runtime,
    show,
)

__all__ = [
    "app",
    "main",
    "run",
]

app = common.app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: `sys.argv[1:]`) and return the exit code."""
    args = _global_flags_first(list(sys.argv[1:] if argv is None else argv))
    command = typer.main.get_command(app)
    try:
        # standalone mode lets typer render usage errors (exit 2) and --help itself;
        # only our own errors come through as exceptions
        command.main(args=args, prog_name="venvlayers", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if code == 130 and _interrupted(exc):  # typer turns Ctrl-C into a silent exit 130
            common.OUT.stderr.print("interrupted", markup=False)
        return code if isinstance(code, int) else 1
    except VenvLayersError as exc:
        for warning in getattr(exc, "warnings", []):
            common.OUT.stderr.print(f"warning: {warning}", markup=False, highlight=False)
        message = str(exc).strip() or exc.__class__.__name__
        for line in message.splitlines():
            common.OUT.stderr.print(f"error: {line}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        common.OUT.stderr.print("interrupted", markup=False)
        return 130
    return 0


def _interrupted(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_GLOBAL_FLAGS = frozenset({"-v", "-vv", "--verbose", "-q", "--quiet"})


def _global_flags_first(args: list[str]) -> list[str]:
    """Accept -v/-q anywhere before `--` (typer only reads them before the command)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in _GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in _GLOBAL_FLAGS]
    return [*flags, *rest, *args[end:]]


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
