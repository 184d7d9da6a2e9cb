"""Render the CLI reference (`docs/cli.md`) from the typer app.

    python -m venvlayers.cli.docs > docs/cli.md

The output is Markdown built from the command objects themselves (their `name`,
`help`, `params` and `commands`), never from rich's help screens, so it does not
depend on the terminal width, colours or the installed rich version, and it is the
same on every machine. `tests/test_docs.py` regenerates it and fails when the file
in the repository is stale.

Only attributes that click and typer's vendored click share are used (`opts`,
`secondary_opts`, `default`, `metavar`, `is_flag`, `multiple`, `nargs`, `required`,
`hidden`, `count`, `param_type_name`); the value type of an option without a metavar
is read from typer's type descriptor when there is one, else from click's `type`.
"""

from __future__ import annotations

import enum
import inspect
import sys
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import Any

import typer

from .common import COMMAND_ORDER
from .main import app

__all__ = ["render"]

REGENERATE = "python -m venvlayers.cli.docs > docs/cli.md"


_TYPE_NAMES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}


def render(prog: str = "venvlayers") -> str:
    """The whole CLI reference as Markdown (ends with one newline)."""
    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        f"<!-- Generated from the typer app by `{REGENERATE}`; do not edit by hand. -->",
        "",
        f"Every command accepts `-h` / `--help`. Global options go before the command "
        f"(`{prog} -v build`); `-v` and `-q` are also accepted after it. Errors print one "
        "line starting with `error:` and exit with status 1; usage errors exit with 2.",
        "",
        "See [concepts](concepts.md) for what the commands do and "
        "[troubleshooting](troubleshooting.md) for their error messages.",
        "",
    ]
    commands = list(_walk(root, [prog]))
    lines += ["| Command | Summary |", "|---|---|"]
    for path, command in commands:
        title = " ".join(path)
        lines.append(f"| [`{title}`](#{_anchor(title)}) | {_cell(_summary(command))} |")
    lines.append("")
    lines += _section(prog, root, [prog], level=2, title="Global options")
    for path, command in commands:
        lines += _section(prog, command, path, level=len(path), title=f"`{' '.join(path)}`")
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def _walk(group: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """Every visible command below `group`, depth first, in `COMMAND_ORDER`."""
    children = getattr(group, "commands", None) or {}
    for name in sorted(children, key=_order_key):
        command = children[name]
        if getattr(command, "hidden", False):
            continue
        yield [*path, name], command
        if getattr(command, "commands", None):
            yield from _walk(command, [*path, name])


def _order_key(name: str) -> tuple[int, str]:
    return (COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER), name)


def _section(prog: str, command: Any, path: list[str], *, level: int, title: str) -> list[str]:
    level = min(level, 6)
    lines = [f"{'#' * level} {title}", ""]
    is_group = bool(getattr(command, "commands", None))
    help_text = _help(command)
    if path != [prog] and help_text:
        lines += [help_text, ""]
    lines += ["```text", _usage(command, path), "```", ""]
    if is_group and path != [prog]:
        names = sorted(command.commands, key=_order_key)
        subcommands = ", ".join(f"[`{n}`](#{_anchor(' '.join([*path, n]))})" for n in names)
        lines += [f"Subcommands: {subcommands}.", ""]
    params = [p for p in getattr(command, "params", ()) if not getattr(p, "hidden", False)]
    arguments = [p for p in params if _kind(p) == "argument"]
    options = [p for p in params if _kind(p) == "option"]
    if arguments:
        lines += ["| Argument | Description | Default |", "|---|---|---|"]
        for param in arguments:
            name = _argument_name(param)
            lines.append(f"| `{_code(name)}` | {_cell(_param_help(param))} | {_default(param)} |")
        lines.append("")
    if options:
        lines += ["| Option | Description | Default |", "|---|---|---|"]
        for param in options:
            lines.append(
                f"| {_option_names(param)} | {_cell(_param_help(param))} | {_default(param)} |"
            )
        lines.append("")
    return lines


# -- text ----------------------------------------------------------------------------------


def _help(command: Any) -> str:
    text = getattr(command, "help", None) or ""
    text = inspect.cleandoc(text)
    # click's "\b" marks a paragraph it must not rewrap; it means nothing in Markdown
    text = "\n".join(line for line in text.splitlines() if line.strip() != "\b").strip()
    return markdown_text(text)


_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\*_[]<>"})


def markdown_text(text: str) -> str:
    """Plain help text as Markdown: outside `code spans`, nothing is markup.

    Help strings are written for a terminal; `<layer>` would vanish as an HTML tag
    and `__venvstacks__` would turn bold. Code spans are kept as they are.
    """
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: treat it as plain text too
        return text.translate(_SPECIAL).replace("`", "\\`")
    return "`".join(part if i % 2 else part.translate(_SPECIAL) for i, part in enumerate(parts))


def _summary(command: Any) -> str:
    short = getattr(command, "short_help", None)
    if short:
        return markdown_text(str(short).strip())
    help_text = _help(command)
    return help_text.split("\n\n", 1)[0].replace("\n", " ").strip()


def _param_help(param: Any) -> str:
    text = markdown_text(" ".join(inspect.cleandoc(getattr(param, "help", None) or "").split()))
    notes = []
    if getattr(param, "required", False) and _kind(param) == "option":
        notes.append("Required.")
    if getattr(param, "multiple", False) and "repeatable" not in text.lower():
        notes.append("Repeatable.")
    if getattr(param, "count", False):
        notes.append("Repeatable (counts).")
    return " ".join([text, *notes]).strip()


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|") or " "


def _code(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(title: str) -> str:
    """The anchor GitHub gives a heading (also used by `tests/test_docs.py`)."""
    return github_anchor(title)


def github_anchor(title: str) -> str:
    """Lower case, punctuation other than `-` and `_` dropped, spaces become `-`."""
    text = title.strip().lower()
    kept = "".join(c for c in text if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


# -- parameters ----------------------------------------------------------------------------


def _kind(param: Any) -> str:
    kind = getattr(param, "param_type_name", None)
    if kind in ("option", "argument"):
        return str(kind)
    return "option" if getattr(param, "opts", [""])[0].startswith("-") else "argument"


def _argument_name(param: Any) -> str:
    name = param.metavar or str(param.name).upper()
    if getattr(param, "nargs", 1) == -1:
        return f"{name}..."
    return str(name)


def _option_names(param: Any) -> str:
    """`-o`, `--output-dir DIR`: short names first, the value after the last name."""
    opts = sorted(param.opts, key=lambda o: (o.startswith("--"), o))
    names = [*opts, *getattr(param, "secondary_opts", ())]
    if not _is_flag(param):
        names[-1] = f"{names[-1]} {_value_name(param)}"
    return ", ".join(f"`{_code(name)}`" for name in names)


def _usage(command: Any, path: list[str]) -> str:
    """`venvlayers lock [OPTIONS] [SPEC]`, in click's notation."""
    pieces = [*path]
    params = [p for p in getattr(command, "params", ()) if not getattr(p, "hidden", False)]
    if any(_kind(p) == "option" for p in params) or not params:
        pieces.append("[OPTIONS]")
    for param in params:
        if _kind(param) != "argument":
            continue
        name = str(param.metavar or str(param.name).upper())
        many = getattr(param, "nargs", 1) == -1
        if getattr(param, "required", False):
            pieces.append(f"{name}..." if many else name)
        else:
            pieces.append(f"[{name}]..." if many else f"[{name}]")
    if getattr(command, "commands", None):
        pieces += ["COMMAND", "[ARGS]..."]
    return " ".join(pieces)


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False) or getattr(param, "count", False))


def _value_name(param: Any) -> str:
    if param.metavar:
        return str(param.metavar)
    choices = _choices(param)
    if choices:
        return "[" + "|".join(choices) + "]"
    annotation = _annotation(param)
    if annotation is not None:
        return _type_name(annotation)
    click_type = getattr(param, "type", None)
    name = getattr(click_type, "name", None)
    return str(name).upper() if name else "VALUE"


def _annotation(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "annotation", None)


def _type_name(annotation: Any) -> str:
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) in (list, tuple, set) and args:
        return _type_name(args[0])
    if isinstance(annotation, type):
        if issubclass(annotation, PurePath):
            return "PATH"
        return _TYPE_NAMES.get(annotation, annotation.__name__.upper())
    return "VALUE"


def _choices(param: Any) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    raw: Sequence[Any] = ()
    if descriptor is not None and getattr(descriptor, "is_choice", False):
        raw = getattr(descriptor, "choices", None) or ()
    else:
        raw = getattr(getattr(param, "type", None), "choices", None) or ()
    return [_plain(c) for c in raw]


def _plain(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, PurePath):
        return value.as_posix()
    return str(value)


def _default(param: Any) -> str:
    if getattr(param, "required", False):
        return "required"
    shown = getattr(param, "show_default", True)
    if shown is False:
        return "—"
    if isinstance(shown, str):  # the option says how to write its default (e.g. "1/3")
        return f"`{_code(shown)}`"
    default = getattr(param, "default", None)
    if callable(default):
        return "—"  # computed at run time: depends on the machine, not shown
    secondary = getattr(param, "secondary_opts", ())
    if secondary and isinstance(default, bool):
        on, off = param.opts[0], secondary[0]
        return f"`{on if default else off}`"
    if getattr(param, "count", False):
        return f"`{default or 0}`"
    if _is_flag(param):
        return "on" if default else "off"
    if default is None or default == () or default == []:
        return "—"
    if isinstance(default, list | tuple):
        return ", ".join(f"`{_code(_plain(v))}`" for v in default)
    return f"`{_code(_plain(default))}`"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the reference to stdout (UTF-8, `\\n` line ends, whatever the platform)."""
    del argv
    text = render()
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    if out is None:
        sys.stdout.write(text)
    else:
        out.write(text.encode("utf-8"))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
