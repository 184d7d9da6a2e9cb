"""The user documentation in `docs/` stays true to the code.

- `docs/cli.md` is exactly what `python -m venvlayers.cli.docs` renders now;
- every field the spec loader accepts is documented in `docs/spec.md`;
- every link between docs pages (and to files of the repository) resolves, anchors too;
- every fenced `toml` example parses, and every complete spec among them loads.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from venvlayers import errors
from venvlayers.cli.common import app
from venvlayers.cli.docs import REGENERATE, github_anchor, render
from venvlayers.layout import LayerConfig
from venvlayers.platforms import TargetPlatform
from venvlayers.spec import StackSpec
from venvlayers.spec.fields import KNOWN_KEYS
from venvlayers.spec.uvconfig import _RESERVED

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# Pages another issue delivers: links to them are checked once they exist.
PENDING_PAGES = {"deploying.md"}

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w.+-]*)")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def _read(name: str) -> str:
    return (DOCS / name).read_text("utf-8")


def _split(text: str) -> Iterator[tuple[str, str, int]]:
    """(kind, content, line) pieces: kind is 'prose' or the language of a fenced block."""
    lines = text.splitlines()
    i = 0
    prose: list[str] = []
    prose_start = 1
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            yield "prose", "\n".join(prose), prose_start
            prose = []
        fence, lang = match.group(1), match.group(2) or "text"
        start = i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith(fence):
            body.append(lines[i])
            i += 1
        yield lang, "\n".join(body), start + 1
        i += 1
        prose_start = i + 1
    if prose:
        yield "prose", "\n".join(prose), prose_start


def _anchors(text: str) -> set[str]:
    """The anchors GitHub generates for the headings of a page (duplicates numbered)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for kind, content, _line in _split(text):
        if kind != "prose":
            continue
        for line in content.splitlines():
            heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if not heading:
                continue
            slug = github_anchor(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    found.update(re.findall(r'<a (?:name|id)="([^"]+)"', text))
    return found


def _links(text: str) -> Iterator[tuple[str, int]]:
    for kind, content, line in _split(text):
        if kind != "prose":
            continue
        for offset, raw in enumerate(content.splitlines()):
            for match in _LINK.finditer(_CODE_SPAN.sub("", raw)):
                yield match.group(1), line + offset


def test_link_and_anchor_helpers() -> None:
    text = (
        "# Title\n\n```toml\n# not a heading\n[a](inside-code.md)\n```\n"
        "## A `b` c!\n## A `b` c!\nSee [x](other.md#y) and `[no](link.md)`.\n"
    )
    assert _anchors(text) == {"title", "a-b-c", "a-b-c-1"}
    assert [target for target, _line in _links(text)] == ["other.md#y"]


# -- the CLI reference ----------------------------------------------------------------------


def test_cli_reference_is_up_to_date() -> None:
    expected = render()
    path = DOCS / "cli.md"
    actual = path.read_text("utf-8") if path.exists() else ""
    if actual != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    actual.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    "docs/cli.md (committed)",
                    "docs/cli.md (generated)",
                )
            )[:60]
        )
        pytest.fail(
            f"docs/cli.md is stale: the CLI changed; run `{REGENERATE}` and commit it\n{diff}",
            pytrace=False,
        )


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = render()
    monkeypatch.setenv("COLUMNS", "33")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render() == plain
    assert "\x1b" not in plain
    assert plain.endswith("\n") and not plain.endswith("\n\n")


def _commands(group: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in getattr(group, "commands", {}).items():
        if getattr(command, "hidden", False):
            continue
        yield (*path, name), command
        yield from _commands(command, (*path, name))


def test_cli_reference_covers_every_command_and_option() -> None:
    text = render()
    anchors = _anchors(text)
    root = typer.main.get_command(app)
    commands = list(_commands(root, ("venvlayers",)))
    assert len(commands) >= 10
    for path, command in commands:
        assert github_anchor(" ".join(path)) in anchors, path
        section = text.split(f"`{' '.join(path)}`\n", 1)[1]
        for param in command.params:
            if getattr(param, "hidden", False) or param.param_type_name != "option":
                continue
            for opt in [*param.opts, *param.secondary_opts]:
                assert f"`{opt}" in section, f"{' '.join(path)}: {opt} is not documented"


# -- the spec reference ---------------------------------------------------------------------


def test_every_spec_field_is_documented() -> None:
    text = _read("spec.md")
    fields = {key for keys in KNOWN_KEYS.values() for key in keys}
    fields |= {"fully_versioned_name", "build_requirements", "runtimes", "frameworks"}
    fields |= {"applications", "index", "sources", "exclude-newer", *_RESERVED}
    missing = sorted(f for f in fields if f"`{f}`" not in text)
    assert not missing, f"docs/spec.md does not mention: {', '.join(missing)}"
    headings = _anchors(text)
    common = set.intersection(*(set(keys) for keys in KNOWN_KEYS.values()))
    undocumented = sorted(key for key in common if github_anchor(key) not in headings)
    assert not undocumented, f"common fields without their own section: {undocumented}"
    for platform in TargetPlatform.all():
        assert f"`{platform}`" in text


def test_every_error_class_is_in_troubleshooting() -> None:
    text = _read("troubleshooting.md")
    anchors = _anchors(text)
    for name in errors.__all__:
        assert github_anchor(name) in anchors, f"troubleshooting.md has no section for {name}"


def test_layer_config_and_lock_metadata_fields_are_explained() -> None:
    text = _read("concepts.md")
    fields = [
        *LayerConfig.__annotations__,
        "requirements_hash",
        "lock_input_hash",
        "other_inputs_hash",
        "version_inputs_hash",
        "lock_version",
        "locked_at",
    ]
    missing = [f for f in fields if f"`{f}`" not in text]
    assert not missing, f"docs/concepts.md does not explain: {missing}"


# -- links ----------------------------------------------------------------------------------


def test_docs_pages_exist() -> None:
    names = {p.name for p in PAGES}
    expected = {"index.md", "concepts.md", "spec.md", "cli.md", "migrating.md"}
    assert expected | {"troubleshooting.md"} <= names


def test_internal_links_resolve() -> None:
    broken: list[str] = []
    anchors_of: dict[Path, set[str]] = {}
    for page in PAGES:
        for target, line in _links(page.read_text("utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            where = f"{page.name}:{line}: {target}"
            file_part, _, anchor = target.partition("#")
            path = (page.parent / file_part).resolve() if file_part else page
            if not path.exists():
                if path.parent == DOCS and path.name in PENDING_PAGES:
                    continue
                broken.append(f"{where} (no such file)")
                continue
            if anchor and path.suffix == ".md":
                if path not in anchors_of:
                    anchors_of[path] = _anchors(path.read_text("utf-8"))
                if anchor not in anchors_of[path]:
                    broken.append(f"{where} (no heading with that anchor)")
    assert not broken, "broken links in docs/:\n" + "\n".join(broken)


def test_every_page_is_reachable_from_the_index() -> None:
    linked = {t.partition("#")[0] for t, _ in _links(_read("index.md"))}
    for page in PAGES:
        if page.name != "index.md":
            assert page.name in linked, f"docs/index.md does not link to {page.name}"


# -- TOML examples --------------------------------------------------------------------------


def _toml_blocks() -> Iterator[tuple[str, int, str]]:
    for page in PAGES:
        for kind, content, line in _split(page.read_text("utf-8")):
            if kind == "toml":
                yield page.name, line, content


TOML_BLOCKS = list(_toml_blocks())


def _make_modules(spec_dir: Path, data: dict[str, Any]) -> None:
    """Empty launch and support modules for every application of a spec example."""
    for app_table in data.get("applications", []):
        for raw in [app_table.get("launch_module"), *app_table.get("support_modules", [])]:
            if not isinstance(raw, str):
                continue
            path = spec_dir / raw
            if raw.endswith(".py"):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "__init__.py").write_text("")
                (path / "__main__.py").write_text("")


def test_there_are_toml_examples() -> None:
    complete = [b for b in TOML_BLOCKS if "runtimes" in tomllib.loads(b[2])]
    assert len([b for b in TOML_BLOCKS if b[0] == "spec.md"]) >= 10
    assert len(complete) >= 10


@pytest.mark.parametrize("page,line,text", TOML_BLOCKS, ids=[f"{p}:{n}" for p, n, _ in TOML_BLOCKS])
def test_toml_example_is_valid(page: str, line: int, text: str, tmp_path: Path) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{page}:{line}: invalid TOML: {exc}", pytrace=False)
    if "runtimes" not in data:
        return  # a fragment (or a venvstacks.uv.toml): parsing is all we can check
    _make_modules(tmp_path, data)
    spec = tmp_path / "venvstacks.toml"
    spec.write_text(text, "utf-8")
    loaded = StackSpec.load(spec)
    if "# this example warns" in text:
        assert loaded.warnings, f"{page}:{line}: the example should warn"
    else:
        assert not loaded.warnings, f"{page}:{line}: {loaded.warnings}"


def test_metadata_fields_are_venvstacks_plus_documented_additions() -> None:
    """Published metadata: every venvstacks 0.8 field, and ours documented as ours.

    venvstacks' fields are read from what venvstacks 0.8 itself published for the
    `venvstacks08` fixture project (tests/e2e/stacks/venvstacks08/expected/).
    """
    expected = Path(__file__).parent / "e2e/stacks/venvstacks08/expected/__venvstacks__"
    theirs: set[str] = set()
    for snippet in (expected / "env_metadata").glob("*.json"):
        theirs |= set(json.loads(snippet.read_text()))
    schema = json.loads(
        (Path(__file__).parents[1] / "src/venvlayers/schemas/env_metadata.schema.json").read_text()
    )
    ours = set(schema["properties"])
    assert theirs <= ours, f"venvstacks fields missing from our schema: {theirs - ours}"
    text = _read("concepts.md")
    assert not [f for f in theirs if f"`{f}`" not in text]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for added in sorted(ours - theirs):
        row = next((r for r in rows if r.startswith(f"| `{added}`")), "")
        assert "venvlayers only" in row, f"docs/concepts.md does not document {added!r} as ours"
