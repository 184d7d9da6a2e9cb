"""Our own reading of `.gitignore` files, for when git itself cannot be asked.

Application modules are filtered the way git would filter them. Where git is installed
and the module lives in a work tree, `appmodules` asks git; this module is the fallback
(no git, no repository, a source tree unpacked from an archive) and follows the rules
of gitignore(5) and git's `wildmatch`:

- blank lines and lines starting with `#` match nothing; trailing spaces are dropped
  unless escaped with a backslash; `\\#` and `\\!` start a pattern with a literal `#`/`!`;
- `!` re-includes what an earlier pattern excluded, but never below an excluded
  directory (git does not look inside those);
- a pattern with a `/` at its start or in its middle is relative to the directory of
  its `.gitignore`; otherwise it matches a name at any depth below it;
- a trailing `/` matches directories only;
- `*` and `?` never match `/`; `[...]` is a bracket expression (`!`/`^` negation, ranges,
  `[:alpha:]`-style classes) that never matches `/`;
- `**/` at the start, `/**` at the end and `/**/` in the middle match across
  directories; any other `**` is an ordinary `*`;
- within one file the last matching pattern wins, and a `.gitignore` deeper in the tree
  overrides those above it.

Paths are POSIX strings relative to the root of the rules (the work tree's top).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IgnoreRules", "Pattern", "find_root", "list_files", "parse_line", "parse_text"]

IGNORE_FILE = ".gitignore"

# ASCII sets of the character classes wildmatch accepts inside brackets.
_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


class _NeverMatches(Exception):
    """The pattern is malformed in a way that makes git's wildmatch give up on it."""


@dataclass(frozen=True)
class Pattern:
    """One usable line of a `.gitignore`."""

    text: str  # the line as written (for messages and debugging)
    base: str  # directory of its .gitignore relative to the rules' root; "" for the root
    negated: bool
    dir_only: bool
    regex: re.Pattern[str]  # matched against the path relative to `base`

    def matches(self, path: str, *, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not path.startswith(self.base + "/"):
                return False
            path = path[len(self.base) + 1 :]
        return self.regex.fullmatch(path) is not None


def parse_line(line: str, base: str = "") -> Pattern | None:
    """The pattern on one `.gitignore` line, or None if the line can never match."""
    text = line[:-1] if line.endswith("\r") else line
    if not text or text.startswith("#"):
        return None
    body = _trim_trailing_spaces(text)
    negated = body.startswith("!")
    if negated:
        body = body[1:]
    dir_only = body.endswith("/")
    if dir_only:
        body = body[:-1]
    if not body:
        return None
    anchored = "/" in body
    if body.startswith("/"):
        body = body[1:]
    try:
        glob = _translate(body)
    except _NeverMatches:
        return None
    # An unanchored pattern matches the last component of a path at any depth.
    regex = glob if anchored else f"(?:.*/)?{glob}"
    return Pattern(text, base, negated, dir_only, re.compile(regex, re.DOTALL))


def parse_text(text: str, base: str = "") -> tuple[Pattern, ...]:
    """Every usable pattern of a `.gitignore` file's content, in order."""
    text = text.removeprefix("\ufeff")  # git skips a UTF-8 byte order mark
    found = (parse_line(line, base) for line in text.split("\n"))
    return tuple(p for p in found if p is not None)


@dataclass(frozen=True)
class IgnoreRules:
    """The patterns in force for some directory, shallowest `.gitignore` first."""

    patterns: tuple[Pattern, ...] = ()

    def with_text(self, text: str, base: str = "") -> IgnoreRules:
        """These rules plus a `.gitignore` in directory `base`, which takes precedence."""
        added = parse_text(text, base)
        return IgnoreRules(self.patterns + added) if added else self

    def matches(self, path: str, *, is_dir: bool) -> bool:
        """Whether `path` itself is ignored, judging by the last pattern matching it."""
        for pattern in reversed(self.patterns):
            if pattern.matches(path, is_dir=is_dir):
                return not pattern.negated
        return False

    def excludes(self, path: str, *, is_dir: bool) -> bool:
        """Whether `path` is ignored, also because a directory above it is.

        Git does not look inside an ignored directory, so nothing below it can be
        re-included by a `!` pattern.
        """
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if self.matches("/".join(parts[:depth]), is_dir=True):
                return True
        return self.matches(path, is_dir=is_dir)


def find_root(top: Path, boundary: Path | None = None) -> Path:
    """Where the `.gitignore` files that apply to `top` start.

    The nearest directory at or above `top` holding `.git` (a directory, or a file in
    worktrees and submodules); outside a repository `boundary` when `top` is below it,
    else the filesystem root.
    """
    top = Path(os.path.abspath(top))
    for candidate in (top, *top.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    if boundary is not None:
        boundary = Path(os.path.abspath(boundary))
        if top.is_relative_to(boundary):
            return boundary
    return Path(top.anchor)


def list_files(
    top: Path,
    *,
    boundary: Path | None = None,
    prune: Callable[[str], bool] = lambda name: False,
) -> list[str]:
    """Files below directory `top` that git would not ignore, as sorted POSIX paths.

    Reads every `.gitignore` from `find_root(top, boundary)` down. Symlinks are listed
    as files and not followed (git records them as links). Entries whose name `prune`
    accepts are skipped without being looked into. A directory holding its own `.git`
    is a separate repository: the rules above it do not apply inside it, as in git.
    Raises OSError if a directory or `.gitignore` cannot be read.
    """
    top = Path(os.path.abspath(top))
    root = find_root(top, boundary)
    rules = IgnoreRules().with_text(_read_ignore_file(root), "")
    rel = ""
    here = root
    for part in top.relative_to(root).parts:
        rel = f"{rel}/{part}" if rel else part
        if rules.matches(rel, is_dir=True):
            return []  # an ignored directory hides everything below it
        here = here / part
        rules = rules.with_text(_read_ignore_file(here), rel)
    found: list[str] = []
    _walk(top, rules, rel, "", prune, found)
    return sorted(found)


def _walk(
    directory: Path,
    rules: IgnoreRules,
    rule_rel: str,
    out_rel: str,
    prune: Callable[[str], bool],
    found: list[str],
) -> None:
    # rule_rel: `directory` relative to the rules' root; out_rel: relative to the top listed
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name == ".git" or prune(entry.name):
            continue
        path = f"{rule_rel}/{entry.name}" if rule_rel else entry.name
        out = f"{out_rel}/{entry.name}" if out_rel else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if rules.matches(path, is_dir=is_dir):
            continue
        if not is_dir:
            found.append(out)
            continue
        child = Path(entry.path)
        if os.path.lexists(child / ".git"):
            nested = IgnoreRules().with_text(_read_ignore_file(child), "")
            _walk(child, nested, "", out, prune, found)
        else:
            _walk(child, rules.with_text(_read_ignore_file(child), path), path, out, prune, found)


def _read_ignore_file(directory: Path) -> str:
    path = directory / IGNORE_FILE
    # git refuses to follow a symlinked .gitignore inside the work tree; so do we
    if path.is_symlink() or not path.is_file():
        return ""
    return path.read_bytes().decode("utf-8", "surrogateescape")


def _trim_trailing_spaces(text: str) -> str:
    """Drop trailing spaces, keeping any escaped with a backslash (git's rule)."""
    last_space: int | None = None
    i = 0
    while i < len(text):
        char = text[i]
        if char == " ":
            if last_space is None:
                last_space = i
        elif char == "\\":
            i += 1
            if i == len(text):
                return text  # a lone trailing backslash: git leaves the line as it is
            last_space = None
        else:
            last_space = None
        i += 1
    return text if last_space is None else text[:last_space]


def _translate(glob: str) -> str:
    """A regular expression for a wildmatch pattern (leading `/` already removed)."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        if char == "\\":
            if i + 1 == n:
                raise _NeverMatches  # an escape with nothing to escape
            out.append(re.escape(glob[i + 1]))
            i += 2
        elif char == "*":
            start = i
            while i < n and glob[i] == "*":
                i += 1
            after_slash = start == 0 or glob[start - 1] == "/"
            before_slash = i == n or glob[i] == "/"
            if i - start >= 2 and after_slash and before_slash:
                if i == n:
                    out.append(".*")  # `/**` at the end (or `**` alone): everything inside
                else:
                    out.append("(?:.*/)?")  # `**/` and `/**/`: zero or more directories
                    i += 1
            else:
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            regex, i = _bracket(glob, i)
            out.append(regex)
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _bracket(glob: str, start: int) -> tuple[str, int]:
    """Translate the bracket expression at `glob[start] == "["`; return it and the next index.

    Mirrors wildmatch: the first character (after `!`/`^`) is a member even if it is
    `]`; `-` between two members makes a range (a reversed range matches nothing);
    `[:name:]` is a class and an unknown class or a missing `]` makes the whole pattern
    unusable. A bracket never matches `/`.
    """
    n = len(glob)
    i = start + 1
    negated = i < n and glob[i] in "!^"
    if negated:
        i += 1
    members: list[str] = []
    previous: str | None = None  # the last single character, which may start a range
    first = True
    while True:
        if i >= n:
            raise _NeverMatches
        char = glob[i]
        if char == "]" and not first:
            break
        first = False
        if char == "\\":
            i += 1
            if i >= n:
                raise _NeverMatches
            members.append(re.escape(glob[i]))
            previous = glob[i]
        elif char == "-" and previous is not None and i + 1 < n and glob[i + 1] != "]":
            i += 1
            high = glob[i]
            if high == "\\":
                i += 1
                if i >= n:
                    raise _NeverMatches
                high = glob[i]
            if previous <= high:
                members.append(f"{re.escape(previous)}-{re.escape(high)}")
            previous = None
        elif char == "[" and i + 1 < n and glob[i + 1] == ":":
            end = glob.find("]", i + 2)
            if end == -1:
                raise _NeverMatches
            if end == i + 2 or glob[end - 1] != ":":
                # no `:]`: the `[` is an ordinary member, and so is what follows
                members.append(re.escape("["))
                previous = "["
                i += 1
                continue
            name = glob[i + 2 : end - 1]
            if name not in _CLASSES:
                raise _NeverMatches
            members.append(_CLASSES[name])
            previous = None
            i = end
        else:
            members.append(re.escape(char))
            previous = char
        i += 1
    body = "".join(members)
    if negated:
        return f"[^/{body}]", i + 1
    if not body:
        return "(?!)", i + 1
    return f"(?!/)[{body}]", i + 1
