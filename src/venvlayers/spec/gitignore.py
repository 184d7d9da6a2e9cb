"""Reading `.gitignore` files the way git does, for when git itself cannot be asked.

Application modules are filtered the way git would filter them. Where git is installed
and the module lives in a work tree, `appmodules` asks git; this module is the fallback
(no git, no repository, a source tree unpacked from an archive).

The pattern rules (gitignore(5) and git's wildmatch) are pathspec's `GitIgnoreSpec`,
not ours. What is ours is the walk, which git's rules shape too: a `.gitignore` applies
to its own directory and below, a deeper one overrides those above it, nothing below an
ignored directory can be re-included (git does not look inside), and a directory with
its own `.git` starts afresh.

Where pathspec 1.1 and git disagree, git wins, in as few lines as possible (each case
is in the table of `tests/spec/test_appmodules.py`, which checks every rule against a real
git): a carriage return ending a line is dropped; POSIX classes in brackets
(`[[:digit:]]`) are spelled out as ranges, and a class git does not know, a reversed
range or any line pathspec cannot read makes that line match nothing; a negated
bracket never matches `/`; `dir/**` matches what is inside `dir`, not `dir` itself.

Paths are POSIX strings relative to the root of the rules (the work tree's top).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathspec import GitIgnoreSpec
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

__all__ = ["IgnoreRules", "find_root", "list_files"]

IGNORE_FILE = ".gitignore"

# ASCII sets of the character classes wildmatch accepts inside brackets.
_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \t",
    "cntrl": "\x00-\x1f\x7f",
    "digit": "0-9",
    "graph": "\x21-\x7e",
    "lower": "a-z",
    "print": "\x20-\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \t\n\r\f\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}
_CLASS_RE = re.compile(r"\[:([a-z]*):\]")


@dataclass(frozen=True)
class IgnoreRules:
    """The `.gitignore` files in force for some directory, shallowest first."""

    files: tuple[tuple[str, GitIgnoreSpec], ...] = ()
    """(directory relative to the root, its patterns)."""

    def with_text(self, text: str, base: str = "") -> IgnoreRules:
        """These rules plus a `.gitignore` in directory `base`, which takes precedence."""
        lines = text.removeprefix("\ufeff").split("\n")
        patterns = [p for p in map(_pattern, lines) if p is not None and p.include is not None]
        if not patterns:
            return self
        return IgnoreRules((*self.files, (base, GitIgnoreSpec(patterns))))

    def matches(self, path: str, *, is_dir: bool) -> bool:
        """Whether `path` itself is ignored, judging by the deepest file with a say."""
        for base, spec in reversed(self.files):
            if base and not path.startswith(base + "/"):
                continue
            rel = path[len(base) + 1 :] if base else path
            result = spec.check_file(rel + "/" if is_dir else rel)
            if result.include is not None:
                return result.include
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


class _GitPattern(GitIgnoreSpecPattern):
    """pathspec's pattern, except that a negated bracket never matches `/` (as in git)."""

    @classmethod
    def pattern_to_regex(cls, pattern: Any) -> tuple[Any, bool | None]:
        regex, include = super().pattern_to_regex(pattern)
        if isinstance(regex, str):
            regex = _NEGATED_CLASS_RE.sub(r"\1[^/", regex)
        return regex, include


# an unescaped `[^` opening a negated character class in pathspec's regex
_NEGATED_CLASS_RE = re.compile(r"((?:^|[^\\])(?:\\\\)*)\[\^")


def _pattern(line: str) -> _GitPattern | None:
    """The pattern of one `.gitignore` line as git reads it, or None if it matches nothing."""
    line = line.removesuffix("\r")
    if "[:" in line:
        unknown = False

        def spell_out(match: re.Match[str]) -> str:
            nonlocal unknown
            ranges = _CLASSES.get(match.group(1))
            unknown = unknown or ranges is None
            return ranges or ""

        line = _CLASS_RE.sub(spell_out, line)
        if unknown:
            return None
    if line.endswith("/**") and not line.endswith("\\/**"):
        line += "/*"  # the contents, at any depth, but not the directory itself
    try:
        return _GitPattern(line)
    except (ValueError, re.error):  # GitIgnorePatternError is a ValueError
        return None


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
