"""Shared CLI plumbing: the typer app, console output, verbosity and error mapping.

Command modules (`_cli_*.py`) register their commands on `app`; `cli.py` imports them
all and exposes `main(argv)`. Nothing here holds logic worth calling from Python.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from .. import __version__
from ..progress import Reporter

__all__ = [
    "COMMAND_ORDER",
    "OUT",
    "Output",
    "RichReporter",
    "app",
    "print_json",
    "say",
]


def _quiet_flag_types() -> None:
    """Show no `<bool>` type after flags in --help (typer >= 0.2x labels every option)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - older typer has no such labels
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None:  # pragma: no cover
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        result: str | None = original(self, ctx)
        return result

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_quiet_flag_types()

# The pipeline order reads better than the alphabet; commands not listed here follow,
# sorted by name, so a new command can never be left out.
COMMAND_ORDER = (
    "show",
    "lock",
    "build",
    "publish",
    "sign",
    "local-export",
    "push",
    "pull",
    "deploy",
    "run",
    "status",
    "remove",
    "runtime",
    "fetch",
    "import",
    "list",
    "prune",
)


class _PipelineOrder(TyperGroup):
    """Lists commands in `COMMAND_ORDER` (in `--help` too), not in import order."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(
            names,
            key=lambda n: (
                COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER),
                n,
            ),
        )


app = typer.Typer(
    name="venvlayers",
    cls=_PipelineOrder,
    help="Package Python applications as layered virtual environment stacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Output:
    """Where and how much to print, set by the global options."""

    verbosity: int = 0  # -1 quiet, 0 normal, 1 -v, 2 -vv
    # piped output gets wide lines rather than tables wrapped at 80 columns
    stdout: Console = field(
        default_factory=lambda: Console(
            highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200
        )
    )
    stderr: Console = field(
        default_factory=lambda: Console(
            stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200
        )
    )

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0


OUT = Output()


class _LineFormatter(logging.Formatter):
    """`warning: ...` / `error: ...` prefixes, plain info lines, module names at debug."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        if record.levelno <= logging.DEBUG:
            return f"debug: [{record.name}] {message}"
        return message


def _configure_logging(verbosity: int) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("venvlayers")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def _version_callback(value: bool) -> None:
    if value:
        OUT.stdout.print(f"venvlayers {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More output (-vv for debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Package Python applications as layered virtual environment stacks.

    Pipeline: lock -> build -> publish (or local-export) -> deploy -> run.
    """
    OUT.verbosity = -1 if quiet else min(verbose, 2)
    _configure_logging(OUT.verbosity)


class _SizeColumn(DownloadColumn):
    """Bytes done of the total; blank for work not counted in bytes (a deploy's
    `compiling LAYER` beside its downloads), which would otherwise read `0/? bytes`."""

    def render(self, task: Task) -> Text:
        if task.total is None and not task.completed:
            return Text("")
        return super().render(task)


class RichReporter(Reporter):
    """Draws one progress bar per unit of work while the context is open."""

    def __init__(self, *, transient: bool = False, bytes_mode: bool = False) -> None:
        columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
        # MiB, as every table and summary line prints sizes (`human_size`)
        status = TextColumn("{task.fields[status]}")
        columns.append(_SizeColumn(binary_units=True) if bytes_mode else status)
        columns.append(TimeElapsedColumn())
        self._progress = Progress(
            *columns,
            console=OUT.stderr,
            transient=transient,
            disable=OUT.quiet or not OUT.stderr.is_terminal,
        )
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        # a display that vanishes at the end shows only the work under way: a push of
        # many small blobs would otherwise fill the terminal with finished bars
        self._hide_finished = transient

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def begin(self, key: str, description: str, total: int | None = None) -> None:
        with self._lock:
            self._tasks[key] = self._progress.add_task(description, total=total, status="")

    def advance(self, key: str, amount: int) -> None:
        with self._lock:
            task = self._tasks.get(key)
            if task is not None:
                self._progress.advance(task, amount)

    def end(self, key: str, status: str = "done") -> None:
        with self._lock:
            task = self._tasks.get(key)
            if task is not None:
                total = self._progress.tasks[task].total
                self._progress.update(
                    task,
                    completed=total or 1,
                    total=total or 1,
                    status=status,
                    visible=not self._hide_finished,
                )

    def note(self, message: str) -> None:
        if not OUT.quiet:
            OUT.stderr.print(message)


def print_json(data: object) -> None:
    """JSON for machines: plain, no colour, stable key order as given."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def say(message: str) -> None:
    """A line of normal output (suppressed by -q)."""
    if not OUT.quiet:
        OUT.stdout.print(message)
