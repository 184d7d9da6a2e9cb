"""Application modules: listing through .gitignore (git and our matcher), exact copies, hashes."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from venvlayers.errors import BuildError
from venvlayers.spec import gitignore as _gitignore
from venvlayers.spec.appmodules import copy_modules, module_files, modules_hash, scan_module
from venvlayers.spec.gitignore import IgnoreRules

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    cmd += ["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args]
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(repo), "LC_ALL": "C"}
    return subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())


def _rels(source: Path, paths: list[Path]) -> list[str]:
    return [p.relative_to(source).as_posix() for p in paths]


def _tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` (or `root` itself) with its content."""
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


# --- the matcher against gitignore(5) ---------------------------------------------------

# (.gitignore files by directory, path, is the path a directory, is it ignored)
_CASES: list[tuple[str, dict[str, str], str, bool, bool]] = [
    ("comment-line", {"": "#foo\n"}, "#foo", False, False),
    ("escaped-hash", {"": "\\#foo\n"}, "#foo", False, True),
    ("blank-lines-match-nothing", {"": "\n\n   \n"}, "x", False, False),
    ("trailing-spaces-dropped", {"": "foo   \n"}, "foo", False, True),
    ("escaped-trailing-space-kept", {"": "foo\\ \n"}, "foo ", False, True),
    ("escaped-space-not-plain-name", {"": "foo\\ \n"}, "foo", False, False),
    ("crlf-line-ending", {"": "foo\r\n"}, "foo", False, True),
    ("name-at-any-depth", {"": "foo\n"}, "a/b/foo", False, True),
    ("name-matches-directory", {"": "foo\n"}, "a/foo", True, True),
    ("leading-slash-anchors", {"": "/foo\n"}, "a/foo", False, False),
    ("leading-slash-matches-top", {"": "/foo\n"}, "foo", False, True),
    ("middle-slash-anchors", {"": "a/foo\n"}, "x/a/foo", False, False),
    ("middle-slash-matches-relative", {"": "a/foo\n"}, "a/foo", False, True),
    ("dir-only-skips-file", {"": "build/\n"}, "build", False, False),
    ("dir-only-matches-dir-anywhere", {"": "build/\n"}, "src/build", True, True),
    ("dir-only-hides-contents", {"": "build/\n"}, "src/build/x.py", False, True),
    ("anchored-dir-only", {"": "/build/\n"}, "src/build", True, False),
    ("star-stays-in-segment", {"": "a/*.py\n"}, "a/b/c.py", False, False),
    ("star-in-segment", {"": "a/*.py\n"}, "a/c.py", False, True),
    ("star-matches-dotfile", {"": "*.cfg\n"}, ".hidden.cfg", False, True),
    ("question-mark-one-char", {"": "?.txt\n"}, "a.txt", False, True),
    ("question-mark-not-two", {"": "?.txt\n"}, "ab.txt", False, False),
    ("class-member", {"": "[abc].py\n"}, "b.py", False, True),
    ("class-non-member", {"": "[abc].py\n"}, "d.py", False, False),
    ("class-negated-bang", {"": "[!abc].py\n"}, "d.py", False, True),
    ("class-negated-caret", {"": "[^abc].py\n"}, "a.py", False, False),
    ("class-range", {"": "file[0-9].txt\n"}, "file7.txt", False, True),
    ("class-posix-digit", {"": "[[:digit:]]*.log\n"}, "1x.log", False, True),
    ("class-posix-digit-miss", {"": "[[:digit:]]*.log\n"}, "x1.log", False, False),
    ("class-bracket-first", {"": "[]a]x\n"}, "]x", False, True),
    ("class-trailing-dash", {"": "x[a-]\n"}, "x-", False, True),
    ("class-reversed-range", {"": "[z-a]\n"}, "m", False, False),
    ("class-never-matches-slash", {"": "x/a[!c]b\n"}, "x/a/b", False, False),
    ("question-mark-never-matches-slash", {"": "x/a?b\n"}, "x/a/b", False, False),
    ("class-unclosed-never-matches", {"": "foo[\n"}, "foo[", False, False),
    ("class-unknown-never-matches", {"": "[[:nope:]]\n"}, "n", False, False),
    ("escaped-star", {"": "foo\\*\n"}, "foo*", False, True),
    ("escaped-star-not-wild", {"": "foo\\*\n"}, "foox", False, False),
    ("escaped-question", {"": "a\\?\n"}, "ab", False, False),
    ("escaped-bang", {"": "\\!important\n"}, "!important", False, True),
    ("leading-globstar-top", {"": "**/foo\n"}, "foo", False, True),
    ("leading-globstar-deep", {"": "**/foo\n"}, "a/b/foo", False, True),
    ("leading-globstar-pair", {"": "**/foo/bar\n"}, "x/foo/bar", False, True),
    ("leading-globstar-pair-direct", {"": "**/foo/bar\n"}, "foo/x/bar", False, False),
    ("trailing-globstar-contents", {"": "abc/**\n"}, "abc/x/y", False, True),
    ("trailing-globstar-not-dir-itself", {"": "abc/**\n"}, "abc", True, False),
    ("middle-globstar-zero-dirs", {"": "a/**/b\n"}, "a/b", False, True),
    ("middle-globstar-many-dirs", {"": "a/**/b\n"}, "a/x/y/b", False, True),
    ("middle-globstar-is-anchored", {"": "a/**/b\n"}, "x/a/b", False, False),
    ("other-double-star-is-star", {"": "a**b\n"}, "x/axxb", False, True),
    ("other-double-star-no-slash", {"": "x/a**b\n"}, "x/a/b", False, False),
    ("globstar-alone", {"": "**\n"}, "a/b", False, True),
    ("negation-reincludes", {"": "*.log\n!keep.log\n"}, "keep.log", False, False),
    ("negation-others-stay", {"": "*.log\n!keep.log\n"}, "other.log", False, True),
    ("last-match-wins", {"": "!keep.log\n*.log\n"}, "keep.log", False, True),
    ("no-reinclude-under-dir", {"": "logs/\n!logs/keep.log\n"}, "logs/keep.log", False, True),
    ("reinclude-one-file", {"": "/*\n!/foo\n/foo/*\n!/foo/bar\n"}, "foo/bar", False, False),
    ("reinclude-one-file-sibling", {"": "/*\n!/foo\n/foo/*\n!/foo/bar\n"}, "foo/baz", False, True),
    (
        "nested-overrides-parent",
        {"": "*.txt\n", "sub": "!notes.txt\n"},
        "sub/notes.txt",
        False,
        False,
    ),
    ("nested-scope-only-below", {"": "*.txt\n", "sub": "!notes.txt\n"}, "notes.txt", False, True),
    ("nested-anchor-is-its-dir", {"sub": "/local\n"}, "sub/local", False, True),
    ("nested-anchor-not-deeper", {"sub": "/local\n"}, "sub/x/local", False, False),
    ("nested-no-effect-outside", {"sub": "*.py\n"}, "a.py", False, False),
    ("nested-middle-slash", {"sub": "a/b\n"}, "sub/a/b", False, True),
    (
        "nested-in-ignored-dir-unread",
        {"": "build/\n", "build": "!x.py\n"},
        "build/x.py",
        False,
        True,
    ),
]


def _rules(files: dict[str, str]) -> IgnoreRules:
    rules = IgnoreRules()
    for base in sorted(files, key=lambda b: (b.count("/") + bool(b), b)):
        rules = rules.with_text(files[base], base)
    return rules


@pytest.mark.parametrize(
    ("files", "path", "is_dir", "ignored"),
    [pytest.param(*case[1:], id=case[0]) for case in _CASES],
)
def test_matcher_follows_gitignore_rules(
    files: dict[str, str], path: str, is_dir: bool, ignored: bool
) -> None:
    assert _rules(files).excludes(path, is_dir=is_dir) is ignored


@needs_git
@pytest.mark.parametrize(
    ("files", "path", "is_dir", "ignored"),
    [pytest.param(*case[1:], id=case[0]) for case in _CASES],
)
def test_matcher_table_agrees_with_git(
    tmp_path: Path, files: dict[str, str], path: str, is_dir: bool, ignored: bool
) -> None:
    """Each table case, played out in a real repository: git and our walk list the same."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _write(repo, {f"{base}/.gitignore" if base else ".gitignore": t for base, t in files.items()})
    probe = f"{path}/_probe" if is_dir else path
    _write(repo, {probe: "x"})
    listed = _git(repo, "ls-files", "-z", "--others", "--exclude-per-directory=.gitignore")
    by_git = sorted(n for n in listed.split("\0") if n)
    assert _gitignore.list_files(repo) == by_git
    if not is_dir or ignored:  # an ignored directory hides its contents
        assert (probe not in by_git) is ignored


def test_a_line_keeps_what_was_written() -> None:
    """Negation, directory-only and the anchor at its .gitignore's own directory."""
    rules = IgnoreRules().with_text("*.md\n").with_text("!/docs/*.md/  ", base="sub")
    assert not rules.matches("sub/docs/x.md", is_dir=True)  # negated, anchored at sub/
    assert rules.matches("sub/docs/x.md", is_dir=False)  # dir-only: not for files
    assert rules.matches("docs/x.md", is_dir=True)  # outside sub/
    for line in ("# comment", "!", "trailing\\"):
        assert IgnoreRules().with_text(line) == IgnoreRules() or not IgnoreRules().with_text(
            line
        ).matches(line.lstrip("#!"), is_dir=False)


def test_bom_is_skipped() -> None:
    assert IgnoreRules().with_text("\ufefffoo\n").matches("foo", is_dir=False)


# --- listing a package ------------------------------------------------------------------

_REPO_FILES = {
    ".gitignore": "*.log\n!important.log\n/pkg/generated/\nscratch*/\n\\#notes\n",
    "pkg/__init__.py": "",
    "pkg/__main__.py": "print('hi')\n",
    "pkg/app.log": "ignored by *.log",
    "pkg/important.log": "re-included",
    "pkg/#notes": "ignored via escape",
    "pkg/generated/gen.py": "ignored by anchored dir pattern",
    "pkg/scratch1/tmp.py": "ignored by dir-only glob",
    "pkg/data/table.csv": "a,b\n",
    "pkg/.gitattributes": "* text=auto\n",
    "pkg/.github/workflow.yml": "always excluded",
    "pkg/__pycache__/x.cpython-311.pyc": "always excluded",
    "pkg/stray.pyc": "always excluded",
    "pkg/sub/__init__.py": "",
    "pkg/sub/.gitignore": "/local.py\n*.tmp\n!keep.tmp\n",
    "pkg/sub/local.py": "ignored, anchored to sub/",
    "pkg/sub/a.tmp": "ignored",
    "pkg/sub/keep.tmp": "re-included",
    "pkg/sub/deep/__init__.py": "",
    "pkg/sub/deep/local.py": "kept: /local.py is anchored to sub/",
    "pkg/sub/deep/more/mod.py": "x = 1\n",
    "pkg/sub/deep/more/b.tmp": "ignored by the parent's *.tmp",
}

_EXPECTED_PKG = [
    "__init__.py",
    "__main__.py",
    "data/table.csv",
    "important.log",
    "sub/__init__.py",
    "sub/deep/__init__.py",
    "sub/deep/local.py",
    "sub/deep/more/mod.py",
    "sub/keep.tmp",
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _write(root, _REPO_FILES)
    _git(root, "add", "pkg/__init__.py", "pkg/sub/__init__.py", ".gitignore")
    _git(root, "commit", "-qm", "some files tracked, the rest untracked")
    return root


@needs_git
def test_git_and_fallback_select_the_same_files(repo: Path) -> None:
    pkg = repo / "pkg"
    assert _rels(pkg, module_files(pkg)) == _EXPECTED_PKG
    assert _rels(pkg, module_files(pkg, use_git=False)) == _EXPECTED_PKG


@needs_git
def test_without_git_on_path_the_fallback_is_used(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(repo / "no-such-dir"))
    pkg = repo / "pkg"
    assert _rels(pkg, module_files(pkg)) == _EXPECTED_PKG


@needs_git
def test_git_lists_tracked_files_even_if_ignored_but_not_deleted_ones(repo: Path) -> None:
    _write(repo, {"pkg/forced.log": "tracked", "pkg/gone.py": "deleted after commit"})
    _git(repo, "add", "-f", "pkg/forced.log", "pkg/gone.py")
    _git(repo, "commit", "-qm", "more")
    (repo / "pkg/gone.py").unlink()
    listed = _rels(repo / "pkg", module_files(repo / "pkg"))
    assert "pkg/forced.log" not in listed  # (relative to the package)
    assert "forced.log" in listed  # git's semantics: tracked files are never ignored
    assert "gone.py" not in listed


@needs_git
@pytest.mark.parametrize("use_git", [True, False])
def test_package_in_an_ignored_directory_has_nothing_to_copy(repo: Path, use_git: bool) -> None:
    _write(repo, {".gitignore": "vendor/\n", "vendor/pkg/__init__.py": ""})
    with pytest.raises(BuildError, match="no files to copy"):
        module_files(repo / "vendor/pkg", use_git=use_git)


@needs_git
def test_nested_repository_has_its_own_rules(repo: Path) -> None:
    nested = repo / "pkg/vendored"
    _write(nested, {"v.py": "", "v.log": "outer *.log does not apply", ".gitignore": "v.py\n"})
    _git(nested, "init", "-q")
    expected = sorted([*_EXPECTED_PKG, "vendored/v.log"])
    assert _rels(repo / "pkg", module_files(repo / "pkg")) == expected
    assert _rels(repo / "pkg", module_files(repo / "pkg", use_git=False)) == expected


def test_outside_a_repository_gitignores_are_read_up_to_the_boundary(tmp_path: Path) -> None:
    _write(tmp_path, {".gitignore": "*.txt\n", "spec/.gitignore": "*.md\n"})
    _write(tmp_path, {"spec/pkg/a.py": "", "spec/pkg/a.txt": "", "spec/pkg/a.md": ""})
    pkg = tmp_path / "spec/pkg"
    assert _rels(pkg, module_files(pkg, boundary=tmp_path / "spec")) == ["a.py", "a.txt"]
    assert _rels(pkg, module_files(pkg, boundary=tmp_path)) == ["a.py"]


def test_always_excluded_without_any_gitignore(tmp_path: Path) -> None:
    _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "__pycache__/__init__.cpython-311.pyc": "",
            "sub/__pycache__/m.cpython-311.pyc": "",
            "sub/m.py": "",
            "old.pyc": "",
            "old.pyo": "",
            ".gitignore": "",
            ".gitattributes": "",
            ".git/HEAD": "",
            ".gitmodules": "",
        },
    )
    pkg = tmp_path / "pkg"
    assert _rels(pkg, module_files(pkg, boundary=tmp_path)) == ["__init__.py", "sub/m.py"]


def test_single_file_module(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "print('app')\n"})
    module = scan_module(tmp_path / "app.py")
    assert (module.name, module.is_package) == ("app.py", False)
    assert [f.dest for f in module.files] == ["app.py"]
    site = tmp_path / "site"
    assert copy_modules([tmp_path / "app.py"], site) == ["app.py"]
    assert _tree(site) == {"app.py": b"print('app')\n"}


def test_package_with_nested_subpackages_is_copied(tmp_path: Path) -> None:
    files = {
        "app/__init__.py": "",
        "app/__main__.py": "from app.core import run\nrun()\n",
        "app/core/__init__.py": "def run(): pass\n",
        "app/core/impl/__init__.py": "",
        "app/core/impl/fast.py": "X = 1\n",
        "app/resources/logo.txt": "logo",
    }
    _write(tmp_path / "src", files)
    site = tmp_path / "site"
    assert copy_modules([tmp_path / "src/app"], site, boundary=tmp_path) == ["app"]
    assert _tree(site) == {rel: text.encode() for rel, text in files.items()}
    copied = site / "app/core/impl/fast.py"
    source = tmp_path / "src/app/core/impl/fast.py"
    assert copied.stat().st_ino != source.stat().st_ino  # a copy, not a hard link
    source.write_text("X = 2\n")
    assert copied.read_text() == "X = 1\n"


# --- exact copies -----------------------------------------------------------------------


def test_recopy_is_exact(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(
        src,
        {
            "app/__init__.py": "",
            "app/__main__.py": "",
            "app/old.py": "",
            "app/olddir/x.py": "",
            "app/kind": "a file that becomes a directory",
            "helpers.py": "",
            "tools.py": "",
        },
    )
    site = tmp_path / "site"
    sources = [src / "app", src / "helpers.py", src / "tools.py"]
    first = copy_modules(sources, site, boundary=tmp_path)
    assert first == ["app", "helpers.py", "tools.py"]
    (site / "app/__pycache__").mkdir()
    (site / "app/__pycache__/old.cpython-311.pyc").write_text("bytecode of a deleted module")
    (site / "app/.x.py.abc.vl-tmp").write_text("left by an interrupted copy")
    (site / ".tools.py.abc.vl-tmp").write_text("left by an interrupted copy")
    (site / "numpy").mkdir()  # not ours: must survive
    kept = (site / "app/__main__.py").stat()

    (src / "app/old.py").unlink()
    shutil.rmtree(src / "app/olddir")
    (src / "app/kind").unlink()
    _write(src, {"app/kind/inner.py": "", "app/new.py": "new"})
    second = copy_modules([src / "app", src / "tools.py"], site, previous=first, boundary=tmp_path)

    assert second == ["app", "tools.py"]
    assert sorted(p.name for p in site.iterdir()) == ["app", "numpy", "tools.py"]
    assert sorted(_tree(site / "app")) == ["__init__.py", "__main__.py", "kind/inner.py", "new.py"]
    after = (site / "app/__main__.py").stat()
    assert (after.st_ino, after.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # left alone


def test_module_changing_kind_and_content(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _write(tmp_path, {"a/helpers/__init__.py": "pkg", "b/helpers.py": "file"})
    first = copy_modules([tmp_path / "a/helpers"], site, boundary=tmp_path)
    second = copy_modules([tmp_path / "b/helpers.py"], site, previous=first, boundary=tmp_path)
    assert second == ["helpers.py"]
    assert _tree(site) == {"helpers.py": b"file"}
    (tmp_path / "b/helpers.py").write_text("changed")
    copy_modules([tmp_path / "b/helpers.py"], site, previous=second, boundary=tmp_path)
    assert (site / "helpers.py").read_text() == "changed"


def test_executable_bit_is_kept(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/tool.sh": "#!/bin/sh\n"})
    (tmp_path / "pkg/tool.sh").chmod(0o755)
    site = tmp_path / "site"
    copy_modules([tmp_path / "pkg"], site, boundary=tmp_path)
    assert (site / "pkg/tool.sh").stat().st_mode & 0o777 == 0o755
    assert (site / "pkg/__init__.py").stat().st_mode & 0o777 == 0o644


def test_interrupted_copy_leaves_no_file_under_its_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, {"app.py": "print('complete')\n"})

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfileobj", interrupted)
    site = tmp_path / "site"
    with pytest.raises(KeyboardInterrupt):
        copy_modules([tmp_path / "app.py"], site)
    assert list(site.iterdir()) == []


def test_invalid_previous_name_is_refused_before_anything_changes(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "", "victim/keep.txt": ""})
    site = tmp_path / "site"
    with pytest.raises(BuildError, match=r"invalid module name '\.\./victim'"):
        copy_modules([tmp_path / "app.py"], site, previous=["../victim"])
    assert (tmp_path / "victim/keep.txt").exists()
    assert not site.exists()


def test_problems_are_one_line_build_errors_naming_the_path(tmp_path: Path) -> None:
    _write(tmp_path, {"a/util.py": "", "b/util.py": "", "notes.txt": "", "pkg/.gitignore": "*\n"})
    problems = {
        "does not exist": [tmp_path / "missing.py"],
        "must be a .py file": [tmp_path / "notes.txt"],
        "also used by": [tmp_path / "a/util.py", tmp_path / "b/util.py"],
        "no files to copy": [tmp_path / "pkg"],
    }
    for message, sources in problems.items():
        with pytest.raises(BuildError, match=message) as info:
            copy_modules(sources, tmp_path / "site", boundary=tmp_path)
        assert "\n" not in str(info.value)
        assert str(sources[-1]) in str(info.value)


# --- hashes -----------------------------------------------------------------------------


def _hash_tree_at(root: Path) -> str:
    return modules_hash([root / "app", root / "util.py"], boundary=root)


def test_modules_hash_is_stable_and_sensitive(tmp_path: Path) -> None:
    one = tmp_path / "one"
    _write(one, {"app/__init__.py": "", "app/core/x.py": "x = 1\n", "util.py": "u = 1\n"})
    _write(one, {"app/__pycache__/x.pyc": "ignored", "app/.gitignore": "*.log\n", "app/l.log": ""})
    two = tmp_path / "elsewhere/two"
    shutil.copytree(one, two)
    os.utime(two / "app/core/x.py", (1, 1))
    baseline = _hash_tree_at(one)
    assert baseline.startswith("sha256:")
    assert _hash_tree_at(two) == baseline
    assert modules_hash([two / "util.py", two / "app"], boundary=two) == baseline  # any order

    (two / "app/l.log").write_text("ignored files do not count")
    assert _hash_tree_at(two) == baseline
    (two / "app/core/x.py").write_text("x = 2\n")
    changed = _hash_tree_at(two)
    assert changed != baseline
    (two / "app/core/x.py").write_text("x = 1\n")
    assert _hash_tree_at(two) == baseline
    (two / "app/core/x.py").rename(two / "app/core/y.py")
    renamed = _hash_tree_at(two)
    assert renamed not in (baseline, changed)
    (two / "app/core/y.py").chmod(0o755)
    assert _hash_tree_at(two) != renamed


@needs_git
def test_modules_hash_same_through_git_and_fallback(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_git = modules_hash([repo / "pkg"])
    monkeypatch.setenv("PATH", str(repo / "no-such-dir"))
    assert modules_hash([repo / "pkg"]) == with_git


# --- symlinks ---------------------------------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
class TestSymlinks:
    def _pkg(self, tmp_path: Path) -> Path:
        _write(tmp_path, {"pkg/__init__.py": "", "pkg/real/data.txt": "data", "pkg/real.py": "r"})
        return tmp_path / "pkg"

    def test_link_to_file_inside_is_copied_as_a_file(self, tmp_path: Path) -> None:
        pkg = self._pkg(tmp_path)
        (pkg / "alias.py").symlink_to("real.py")
        site = tmp_path / "site"
        copy_modules([pkg], site, boundary=tmp_path)
        assert not (site / "pkg/alias.py").is_symlink()
        assert (site / "pkg/alias.py").read_text() == "r"

    def test_link_to_directory_inside_is_copied_as_its_files(self, tmp_path: Path) -> None:
        pkg = self._pkg(tmp_path)
        (pkg / "mirror").symlink_to("real", target_is_directory=True)
        assert "mirror/data.txt" in _rels(pkg, module_files(pkg, boundary=tmp_path))
        site = tmp_path / "site"
        copy_modules([pkg], site, boundary=tmp_path)
        assert (site / "pkg/mirror/data.txt").read_text() == "data"
        assert not (site / "pkg/mirror").is_symlink()

    def test_link_outside_the_package_is_refused(self, tmp_path: Path) -> None:
        pkg = self._pkg(tmp_path)
        _write(tmp_path, {"secret.txt": "s"})
        (pkg / "leak.txt").symlink_to(tmp_path / "secret.txt")
        with pytest.raises(BuildError, match="points outside the package") as info:
            copy_modules([pkg], tmp_path / "site", boundary=tmp_path)
        assert str(pkg / "leak.txt") in str(info.value)
        assert not (tmp_path / "site").exists()

    def test_link_cycle_is_refused(self, tmp_path: Path) -> None:
        pkg = self._pkg(tmp_path)
        (pkg / "real/loop").symlink_to("..", target_is_directory=True)
        with pytest.raises(BuildError, match="cycle"):
            module_files(pkg, boundary=tmp_path)

    def test_broken_link_is_skipped_with_a_warning(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        pkg = self._pkg(tmp_path)
        (pkg / "dangling.py").symlink_to("nowhere.py")
        with caplog.at_level(logging.WARNING, logger="venvlayers.spec.appmodules"):
            listed = _rels(pkg, module_files(pkg, boundary=tmp_path))
        assert "dangling.py" not in listed
        assert "broken symlink" in caplog.text
        assert str(pkg / "dangling.py") in caplog.text

    def test_symlinked_package_keeps_the_link_name(self, tmp_path: Path) -> None:
        pkg = self._pkg(tmp_path)
        (tmp_path / "app").symlink_to(pkg, target_is_directory=True)
        site = tmp_path / "site"
        assert copy_modules([tmp_path / "app"], site, boundary=tmp_path) == ["app"]
        assert sorted(_tree(site / "app")) == ["__init__.py", "real.py", "real/data.txt"]

    @needs_git
    def test_git_listed_links_are_handled_the_same(self, repo: Path) -> None:
        pkg = repo / "pkg"
        (pkg / "alias.py").symlink_to("__main__.py")
        (pkg / "leak.py").symlink_to(repo / ".gitignore")
        _git(repo, "add", "pkg/alias.py")
        with pytest.raises(BuildError, match="outside the package"):
            module_files(pkg)
        (pkg / "leak.py").unlink()
        assert "alias.py" in _rels(pkg, module_files(pkg))

    @needs_git
    def test_tracked_file_below_a_directory_now_a_link_outside(self, repo: Path) -> None:
        _write(repo, {"outside/secret.py": "s"})
        _git(repo, "add", "pkg/data/table.csv")
        shutil.rmtree(repo / "pkg/data")
        (repo / "pkg/data").symlink_to(repo / "outside", target_is_directory=True)
        (repo / "outside/table.csv").write_text("not part of the package")
        # ignored, so git does not list the link itself, only the tracked file below it
        _write(repo, {"pkg/.gitignore": "/data\n"})
        with pytest.raises(BuildError, match="reached through a symlink"):
            module_files(repo / "pkg")
