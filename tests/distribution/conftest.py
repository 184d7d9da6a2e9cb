"""Distribution tests never read the developer's registry credentials."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_user_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    empty = tmp_path_factory.mktemp("no-docker-config")
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
