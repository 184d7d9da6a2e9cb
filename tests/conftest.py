"""Shared test configuration: hermetic environment for everything the tool starts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.plugins.wheelhouse",
    "tests.plugins.runtime_fixture",
    "tests.plugins.registry",
]

# Variables from the developer's shell that would change what uv or pip resolve.
_LEAKY_PREFIXES = ("PIP_", "UV_", "PYTHON", "VIRTUAL_ENV", "CONDA_")


@pytest.fixture(autouse=True)
def _scrubbed_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Tests run as if from a clean shell, with their own venvlayers cache."""
    for name in list(os.environ):
        if name.startswith(_LEAKY_PREFIXES) and name not in ("UV_CACHE_DIR",):
            monkeypatch.delenv(name, raising=False)
    if "VENVLAYERS_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("VENVLAYERS_CACHE_DIR", str(tmp_path_factory.mktemp("vl-cache")))
    monkeypatch.delenv("VENVLAYERS_RUNTIME_MIRROR", raising=False)
    yield
