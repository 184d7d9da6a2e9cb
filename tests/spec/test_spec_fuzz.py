"""Property test: whatever the spec file holds, the loader only raises `SpecError`."""

from __future__ import annotations

import contextlib
import string
from pathlib import Path
from typing import Any

import tomlkit
from hypothesis import HealthCheck, given, settings, strategies as st

from venvlayers import SpecError
from venvlayers.spec import StackSpec
from venvlayers.spec.fields import KNOWN_KEYS

# every key the loader knows, plus legacy names and a typo
KEYS = sorted(
    {k for keys in KNOWN_KEYS.values() for k in keys}
    | {"fully_versioned_name", "build_requirements", "requirement"}
)
NAMES = ["rt", "sci", "ml", "app", "app.py", "helper.py", "", "framework-x", "a b", "../x"]
scalars = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(
        [
            "cpython@3.11.7",
            "pypy@3.10.14",
            "cpython@3",
            "glibc@2.28",
            "glibc",
            "11.0",
            "linux_x86_64",
            "win_amd64",
            "numpy>=1",
            "numpy>=",
            "2025-01-01T00:00:00Z",
        ]
    ),
    st.text(alphabet=string.printable, max_size=12),
    st.integers(-3, 3),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from([*KEYS, "index", "url", "x"]), inner, max_size=4),
    ),
    max_leaves=12,
)
layer = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)
spec_data = st.fixed_dictionaries(
    {},
    optional={
        "runtimes": st.one_of(st.lists(layer, max_size=3), values),
        "frameworks": st.one_of(st.lists(layer, max_size=3), values),
        "applications": st.one_of(st.lists(layer, max_size=3), values),
        "tool": st.dictionaries(st.just("uv"), values, max_size=1),
        "extra": values,
    },
)

BASE = {
    "runtimes": [{"name": "rt", "python_implementation": "cpython@3.11.7"}],
    "frameworks": [
        {"name": "sci", "runtime": "rt"},
        {"name": "ml", "frameworks": ["sci"]},
    ],
    "applications": [{"name": "app", "frameworks": ["ml"], "launch_module": "app.py"}],
}


def _load(tmp: Path, data: dict[str, Any]) -> None:
    spec = tmp / "venvstacks.toml"
    spec.write_text(tomlkit.dumps(data))
    try:
        StackSpec.load(spec)
    except SpecError as exc:
        assert exc.problems
        assert all(p and "\n" not in p for p in exc.problems)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=spec_data)
def test_random_specs_only_raise_spec_error(tmp_path: Path, data: dict[str, Any]) -> None:
    (tmp_path / "app.py").write_text("")
    _load(tmp_path, data)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    category=st.sampled_from(["runtimes", "frameworks", "applications"]),
    index=st.integers(0, 1),
    key=st.sampled_from(KEYS),
    value=values,
    delete=st.booleans(),
)
def test_mutated_valid_spec_only_raises_spec_error(
    tmp_path: Path, category: str, index: int, key: str, value: Any, delete: bool
) -> None:
    (tmp_path / "app.py").write_text("")
    data = {k: [dict(x) for x in v] for k, v in BASE.items()}
    layers = data[category]
    target = layers[min(index, len(layers) - 1)]
    if delete:
        target.pop(key, None)
    else:
        target[key] = value
    _load(tmp_path, data)


def test_raw_garbage_only_raises_spec_error(tmp_path: Path) -> None:
    spec = tmp_path / "venvstacks.toml"
    for text in ["\x00\x01", "[[runtimes]\n", "runtimes = [1, 2]", "[tool]\nuv = 3"]:
        spec.write_text(text)
        with contextlib.suppress(SpecError):
            StackSpec.load(spec)
    spec.write_bytes(b"\xff\xfe not utf-8")
    with contextlib.suppress(SpecError):
        StackSpec.load(spec)
