"""The link containment rule against the operating system's own path resolution."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from venvlayers.archives.common import member_parts, resolve_link

DIRS = ["a", "a/b", "c"]
LINK_NAMES = ["l0", "l1", "l2", "l3"]
COMPONENTS = ["..", ".", "a", "b", "c", *LINK_NAMES]

links_strategy = st.dictionaries(
    keys=st.tuples(st.sampled_from(["", *DIRS]), st.sampled_from(LINK_NAMES)).map(
        lambda t: f"{t[0]}/{t[1]}".lstrip("/")
    ),
    values=st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=5).map("/".join),
    min_size=1,
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(links=links_strategy)
def test_resolve_link_agrees_with_realpath(links: dict[str, str]) -> None:
    """Whatever `resolve_link` accepts, the OS resolves to the same place inside the tree."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(os.path.realpath(tmp)) / "sandbox" / "root"
        for d in DIRS:
            (root / d).mkdir(parents=True, exist_ok=True)
        for link, target in links.items():
            os.symlink(target, root / link)
        for link, target in links.items():
            try:
                resolved = resolve_link(link, target, links)
            except ValueError:
                continue  # refused: stricter than the OS is allowed
            expected = os.path.normpath(root / resolved) if resolved else str(root)
            assert os.path.realpath(root / link) == expected
        shutil.rmtree(root.parent)


@pytest.mark.parametrize(
    ("link", "target", "resolved"),
    [
        ("bin/python3", "python", "bin/python"),
        ("lib64", "lib", "lib"),
        ("a/b/up", "../..", ""),
        ("a/x", "../c/./d/", "c/d"),
    ],
)
def test_resolve_link_examples(link: str, target: str, resolved: str) -> None:
    assert resolve_link(link, target, {link: target}) == resolved


@pytest.mark.parametrize(
    ("link", "target", "reason"),
    [
        ("x", "..", "outside the tree"),
        ("a/x", "../../a", "outside the tree"),  # leaves the tree, even if it comes back
        ("x", "/etc", "absolute"),
        ("x", "C:/Windows", "absolute"),
        ("x", "a\\b", "absolute"),
        ("x", "", "empty"),
    ],
)
def test_resolve_link_refusals(link: str, target: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        resolve_link(link, target, {link: target})


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty member name"),
        ("/x", "absolute path"),
        ("c:x", "absolute path"),
        ("a/../b", "'..'"),
        ("a//b", "empty or '.'"),
        ("./a", "empty or '.'"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
    ],
)
def test_member_name_refusals(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        member_parts(name)
