"""Registry authentication: Basic (htpasswd), Bearer tokens, docker config and helpers."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.plugins.registry import (
    PASSWORD,
    REFRESH_TOKEN,
    USER,
    BlobServer,
    CountingProxy,
    Registry,
    auth_entry,
)
from tests.support.published import default_layers, publish_fake, tree_files
from venvlayers.distribution import (
    Credentials,
    TransferOptions,
    auth as auth_module,
    find_credentials,
    open_stack,
    pull,
    push,
)
from venvlayers.distribution.auth import parse_challenge
from venvlayers.errors import DistributionError

FAST = TransferOptions(backoff=0.01, retries=2)
ALICE = TransferOptions(backoff=0.01, retries=2, credentials=Credentials(USER, PASSWORD, "test"))


def helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, answer: dict[str, str]
) -> Path:
    """A `docker-credential-NAME` on PATH that prints `answer` and logs what it was asked."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / f"docker-credential-{name}"
    log = tmp_path / f"{name}.log"
    script.write_text(
        "#!/bin/sh\n"
        f'read host; echo "$1 $host" >> {log}\n'
        f"cat <<'EOF'\n{json.dumps(answer)}\nEOF\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return log


# -- htpasswd (Basic) -------------------------------------------------------------------


def test_basic_auth_without_credentials_says_how_to_log_in(
    htpasswd_registry: Registry, tmp_path: Path
) -> None:
    out = publish_fake(tmp_path / "out", default_layers("basic-anon"))
    with pytest.raises(DistributionError) as caught:
        push(out, htpasswd_registry.ref("basic/anon"), options=FAST)
    assert "HTTP 401 Unauthorized" in str(caught.value)
    assert "docker login" in str(caught.value)


def test_basic_auth_with_docker_config_auths(
    htpasswd_registry: Registry, tmp_path: Path, docker_config: Callable[..., Path]
) -> None:
    config = docker_config({"auths": {htpasswd_registry.host: auth_entry()}})
    assert find_credentials(htpasswd_registry.host) == Credentials(
        USER, PASSWORD, f"{config} (auths['{htpasswd_registry.host}'])"
    )
    out = publish_fake(tmp_path / "out", default_layers("basic-config"))
    push(out, htpasswd_registry.ref("basic/config"), options=FAST)
    pull(htpasswd_registry.ref("basic/config"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


def test_wrong_basic_credentials_name_their_source(
    htpasswd_registry: Registry, tmp_path: Path, docker_config: Callable[..., Path]
) -> None:
    config = docker_config({"auths": {f"https://{htpasswd_registry.host}": auth_entry(USER, "no")}})
    out = publish_fake(tmp_path / "out", default_layers("basic-wrong"))
    with pytest.raises(DistributionError) as caught:
        push(out, htpasswd_registry.ref("basic/wrong"), options=FAST)
    assert f"the credentials from {config}" in str(caught.value)
    assert "were refused" in str(caught.value)
    assert "no" not in str(caught.value).split("refused")[-1]


def test_a_creds_store_helper_is_asked(
    htpasswd_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docker_config: Callable[..., Path],
) -> None:
    log = helper(tmp_path, monkeypatch, "teststore", {"Username": USER, "Secret": PASSWORD})
    docker_config({"credsStore": "teststore", "auths": {htpasswd_registry.host: {}}})
    out = publish_fake(tmp_path / "out", default_layers("basic-store"))
    push(out, htpasswd_registry.ref("basic/store"), options=FAST)
    assert log.read_text().split() == ["get", htpasswd_registry.host]


def test_cred_helpers_win_over_the_store(
    htpasswd_registry: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    docker_config: Callable[..., Path],
) -> None:
    good = helper(tmp_path, monkeypatch, "good", {"Username": USER, "Secret": PASSWORD})
    bad = helper(tmp_path, monkeypatch, "bad", {"Username": USER, "Secret": "nope"})
    docker_config({"credsStore": "bad", "credHelpers": {htpasswd_registry.host: "good"}})
    out = publish_fake(tmp_path / "out", default_layers("basic-helpers"))
    push(out, htpasswd_registry.ref("basic/helpers"), options=FAST)
    assert good.exists() and not bad.exists()


def test_a_missing_helper_is_a_clear_error(
    htpasswd_registry: Registry, monkeypatch: pytest.MonkeyPatch, docker_config: Callable[..., Path]
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    config = docker_config({"credsStore": "nonexistent-store"})
    with pytest.raises(DistributionError) as caught:
        find_credentials(htpasswd_registry.host)
    assert str(caught.value) == (
        f"credential helper docker-credential-nonexistent-store (named in {config}) is not on "
        f"PATH; install it or edit {config}"
    )


def test_registry_auth_file_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docker_config: Callable[..., Path]
) -> None:
    docker_config({"auths": {"r.example": auth_entry("docker", "d")}})
    podman = tmp_path / "auth.json"
    podman.write_text(json.dumps({"auths": {"r.example": auth_entry("podman", "s3cr3t")}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    found = find_credentials("r.example")
    assert found is not None and (found.username, found.secret) == ("podman", "s3cr3t")
    assert find_credentials("other.example") is None
    assert "s3cr3t" not in repr(found)


def test_docker_hub_credentials_are_found_under_their_old_key(
    docker_config: Callable[..., Path],
) -> None:
    docker_config({"auths": {"https://index.docker.io/v1/": auth_entry("hub", "h")}})
    found = find_credentials("registry-1.docker.io")
    assert found is not None and (found.username, found.secret) == ("hub", "h")


def test_challenges_are_parsed() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


# -- token auth (Bearer) ----------------------------------------------------------------


def test_anonymous_tokens_pull_but_do_not_push(token_registry: Registry, tmp_path: Path) -> None:
    assert token_registry.tokens is not None
    out = publish_fake(tmp_path / "out", default_layers("token-anon"))
    with pytest.raises(DistributionError, match="HTTP 401"):
        push(out, token_registry.ref("token/anon"), options=FAST)
    push(out, token_registry.ref("token/anon"), options=ALICE)
    pull(token_registry.ref("token/anon"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)
    accounts = {account for account, _ in token_registry.tokens.issued}
    assert accounts == {"", USER}


def test_token_scopes_cover_the_mount_source(token_registry: Registry, tmp_path: Path) -> None:
    assert token_registry.tokens is not None
    out = publish_fake(tmp_path / "out", default_layers("token-mount"))
    push(out, token_registry.ref("token/source"), options=ALICE)
    token_registry.tokens.issued.clear()
    result = push(out, token_registry.ref("token/target"), mount_from="token/source", options=ALICE)
    assert result.count("mounted") == len(result.blobs)
    scopes = {s for _, asked in token_registry.tokens.issued for s in asked}
    assert {"repository:token/target:pull,push", "repository:token/source:pull"} <= scopes


def test_an_identity_token_is_exchanged_for_access_tokens(
    token_registry: Registry, tmp_path: Path, docker_config: Callable[..., Path]
) -> None:
    assert token_registry.tokens is not None
    docker_config({"auths": {token_registry.host: {"auth": "", "identitytoken": REFRESH_TOKEN}}})
    out = publish_fake(tmp_path / "out", default_layers("token-identity"))
    token_registry.tokens.issued.clear()
    push(out, token_registry.ref("token/identity"), options=FAST)
    assert {account for account, _ in token_registry.tokens.issued} == {USER}


def test_wrong_token_credentials_are_refused(token_registry: Registry, tmp_path: Path) -> None:
    out = publish_fake(tmp_path / "out", default_layers("token-wrong"))
    wrong = TransferOptions(backoff=0.01, retries=1, credentials=Credentials(USER, "x", "a test"))
    with pytest.raises(DistributionError) as caught:
        push(out, token_registry.ref("token/wrong"), options=wrong)
    assert "cannot get a token from" in str(caught.value)
    assert "credentials for" in str(caught.value) and "from a test were refused" in str(
        caught.value
    )


def test_a_token_that_expires_mid_push_is_renewed(
    token_registry: Registry, token_proxy: CountingProxy, tmp_path: Path
) -> None:
    """Tokens live 2 s here (but claim 300); the index PUT waits 3 s: its token is stale."""
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.lifetime = 2
    tokens.announced = 300
    try:
        delayed: list[str] = []

        def once(method: str, path: str) -> float:
            if method == "PUT" and "/manifests/v1" in path and not delayed:
                delayed.append(path)
                return 3.0
            return 0.0

        token_proxy.delay = once
        out = publish_fake(tmp_path / "out", default_layers("token-expiry"))
        tokens.issued.clear()
        push(out, token_proxy.ref("token/expiry"), options=ALICE)
    finally:
        tokens.lifetime = 300
        tokens.announced = None
    statuses = [(h.method, h.status) for h in token_proxy.hits if "/manifests/v1" in h.path]
    assert ("PUT", 401) in statuses and statuses[-1] == ("PUT", 201)
    assert len(tokens.issued) >= 2
    token_proxy.delay = None
    pull(token_proxy.ref("token/expiry"), tmp_path / "mirror", options=FAST)
    assert tree_files(tmp_path / "mirror") == tree_files(out)


def test_credentials_are_not_sent_to_a_redirect_target(
    token_registry: Registry, token_proxy: CountingProxy, tmp_path: Path
) -> None:
    out = publish_fake(tmp_path / "out", default_layers("redirect"))
    push(out, token_registry.ref("token/redirect"), options=ALICE)
    try:
        storage = BlobServer(token_registry)
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    try:
        token_proxy.redirect_blobs = storage
        pull(token_proxy.ref("token/redirect"), tmp_path / "mirror", options=ALICE)
    finally:
        storage.close()
    assert tree_files(tmp_path / "mirror") == tree_files(out)
    assert len(storage.requests) == 9  # every blob came from "object storage"
    assert all("Authorization" not in headers for headers in storage.requests)
    assert all(h.authorization for h in token_proxy.hits if h.status == 307)


def test_tokens_are_renewed_before_they_run_out(
    token_registry: Registry,
    token_proxy: CountingProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token said to last 60 s is not used at 'minute two': a new one comes first."""
    tokens = token_registry.tokens
    assert tokens is not None
    tokens.announced = 60
    clock = [1000.0]
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: clock[0])
    try:
        out = publish_fake(tmp_path / "out", default_layers("token-renew"))
        push(out, token_registry.ref("token/renew"), options=ALICE)
        with open_stack(token_proxy.ref("token/renew"), ALICE) as reader:
            tokens.issued.clear()
            reader.resolve()
            assert len(tokens.issued) == 1
            clock[0] += 120  # two minutes later
            resolved = reader.resolve()
            assert len(tokens.issued) == 2
        challenged = [h for h in token_proxy.hits if h.status == 401]
        assert len(challenged) == 1  # only the very first request, before any token
        assert resolved.layers
    finally:
        tokens.announced = None
