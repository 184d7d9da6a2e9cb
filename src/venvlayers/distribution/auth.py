"""Registry authentication as docker, podman and oras do it.

Credentials for a registry host come from, in this order: an explicit `Credentials`
value; `$REGISTRY_AUTH_FILE`; `$XDG_RUNTIME_DIR/containers/auth.json`;
`$DOCKER_CONFIG/config.json` else `~/.docker/config.json`. In each file
`credHelpers[HOST]` names a helper, else `credsStore` does (run as
`docker-credential-NAME get` with the host on stdin), else `auths[HOST].auth` holds
base64 `user:password` (or `identitytoken` a refresh token). No file and no entry mean
anonymous access, which is what public registries give for pulls.

`RegistryAuth` is the `AuthHook` of one registry: it answers a `401` by reading the
`WWW-Authenticate` challenge. `Bearer realm=...,service=...,scope=...` is the token
flow: a GET to the realm (with Basic credentials when we have them, or a POST with a
refresh token) returns a token for the scopes asked; tokens are kept per scope set and
fetched again when they expire or when the registry answers 401 to one (a token that
ran out in the middle of a long push). `Basic` sends the credentials themselves.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .._util.http import HttpClient, Reply
from ..errors import DistributionError

__all__ = ["Credentials", "RegistryAuth", "find_credentials"]

_HELPER_TIMEOUT = 60.0
_DEFAULT_TOKEN_LIFETIME = 60.0  # what the token spec says to assume
_CHALLENGE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Credentials:
    """A user name and secret, or an identity (refresh) token when `username` is None."""

    username: str | None
    secret: str = ""
    source: str = ""
    """Where they came from, for messages (never the secret itself)."""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def _auth_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG")
    files.append(Path(docker) / "config.json" if docker else Path.home() / ".docker/config.json")
    return files


def find_credentials(host: str) -> Credentials | None:
    """The credentials configured for registry `host` (`HOST[:PORT]`), or None."""
    for path in _auth_files():
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DistributionError(f"cannot read {path}: {exc.strerror}") from None
        try:
            config = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DistributionError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise DistributionError(f"{path}: not a JSON object")
        for name in _names(host):
            found = _from_config(config, name, path)
            if found is not None:
                return found
    return None


_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


def _names(host: str) -> tuple[str, ...]:
    """The keys a host's credentials may be stored under; Docker Hub has its own."""
    if host in _DOCKER_HUB:
        return (host, "https://index.docker.io/v1/")
    return (host,)


def _from_config(config: Mapping[str, object], host: str, path: Path) -> Credentials | None:
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and isinstance(helpers.get(host), str):
        return _run_helper(helpers[host], host, path)
    auths = config.get("auths")
    entry = _auth_entry(auths, host) if isinstance(auths, dict) else None
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = _run_helper(store, host, path)
        if found is not None:
            return found
    if entry is None:
        return None
    where = f"{path} (auths[{host!r}])"
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        return Credentials(None, token, where)
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, colon, secret = base64.b64decode(encoded, validate=False).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise DistributionError(f"{where}: 'auth' is not base64 of user:password") from None
        if not colon:
            raise DistributionError(f"{where}: 'auth' is not base64 of user:password")
        return Credentials(user, secret, where)
    name, password = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(password, str):
        return Credentials(name, password, where)
    return None


def _auth_entry(auths: Mapping[str, object], host: str) -> Mapping[str, object] | None:
    """`auths` is keyed by host, `https://host`, or a URL with a path (old docker)."""
    if isinstance(auths.get(host), dict):
        return auths[host]  # type: ignore[return-value]
    for key, value in auths.items():
        bare = re.sub(r"^https?://", "", key).split("/")[0]
        if bare == host and isinstance(value, dict):
            return value
    return None


def _run_helper(name: str, host: str, config: Path) -> Credentials | None:
    program = shutil.which(f"docker-credential-{name}")
    what = f"credential helper docker-credential-{name} (named in {config})"
    if program is None:
        raise DistributionError(f"{what} is not on PATH; install it or edit {config}")
    # Not through `_proc.run`: that logs output, and this output is a secret. The
    # helper gets the user's environment on purpose (keychains, cloud profiles).
    try:
        proc = subprocess.run(
            [program, "get"],
            input=host,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DistributionError(f"{what} failed: {exc}") from None
    if proc.returncode != 0:
        message = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        if message and "not found" in message[-1].lower():
            return None
        raise DistributionError(f"{what} failed: {message[-1] if message else proc.returncode}")
    try:
        answer = json.loads(proc.stdout)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise DistributionError(f"{what} printed something that is not credentials") from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise DistributionError(f"{what} printed something that is not credentials")
    source = f"docker-credential-{name}"
    return Credentials(None if user == "<token>" else user, secret, source)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): (m[2] if m[2] is not None else m[3]) for m in _CHALLENGE.finditer(rest)}
    return scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()}


@dataclass
class _Token:
    value: str
    expires: float


class RegistryAuth:
    """The `AuthHook` for one registry host; thread-safe (blobs move in parallel)."""

    def __init__(
        self,
        host: str,
        http: HttpClient,
        *,
        scopes: Iterable[str] = (),
        credentials: Credentials | None = None,
        lookup: bool = True,
    ) -> None:
        self.host = host
        self._http = http
        self._scopes = set(scopes)
        self._credentials = credentials
        self._looked_up = credentials is not None or not lookup
        self._lock = threading.Lock()
        self._scheme: str | None = None  # "bearer" or "basic" once challenged
        self._params: dict[str, str] = {}
        self._token: _Token | None = None
        self.tokens_fetched = 0

    @property
    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._looked_up:
                self._credentials = find_credentials(self.host)
                self._looked_up = True
            return self._credentials

    def add_scopes(self, scopes: Iterable[str]) -> None:
        with self._lock:
            new = set(scopes) - self._scopes
            if new:
                self._scopes |= new
                self._token = None

    def headers(self, url: str) -> Mapping[str, str]:
        with self._lock:
            scheme = self._scheme
            token = self._token
        if scheme == "basic":
            creds = self.credentials
            if creds is not None and creds.username is not None:
                raw = f"{creds.username}:{creds.secret}".encode()
                return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
            return {}
        if scheme == "bearer":
            if token is None or token.expires <= time.monotonic():
                token = self._fetch_token()
            return {"Authorization": f"Bearer {token.value}"}
        return {}

    def challenged(self, reply: Reply) -> bool:
        header = reply.header("WWW-Authenticate")
        if not header:
            return False
        scheme, params = parse_challenge(header)
        with self._lock:
            previous = self._scheme
            had_token = self._token is not None
            self._scheme = scheme
            if scheme == "bearer":
                if params.get("scope"):
                    self._scopes.update(params["scope"].split(" "))
                self._params = params
                self._token = None  # expired, or lacking a scope: fetch a new one
        if scheme == "basic":
            creds = self.credentials
            return previous != "basic" and creds is not None and creds.username is not None
        if scheme == "bearer":
            if "realm" not in params:
                raise DistributionError(
                    f"registry {self.host} sent a Bearer challenge without a realm"
                )
            # a token we just fetched being refused again means it lacks the rights
            return previous != "bearer" or had_token
        return False

    def _fetch_token(self) -> _Token:
        with self._lock:
            params = dict(self._params)
            scopes = sorted(self._scopes)
        creds = self.credentials
        realm = params["realm"]
        query = [("service", params["service"])] if "service" in params else []
        query += [("scope", s) for s in scopes]
        hint = (
            f"credentials for {self.host} from {creds.source} were refused"
            if creds is not None
            else f"no credentials for {self.host}: log in with `docker login {self.host}`"
        )
        headers: dict[str, str] = {}
        if creds is not None and creds.username is None:
            form = {"grant_type": "refresh_token", "refresh_token": creds.secret}
            form.update({"service": params.get("service", ""), "scope": " ".join(scopes)})
            body = "&".join(f"{k}={_quote(v)}" for k, v in form.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            reply = self._http.request(
                "POST",
                realm,
                headers=headers,
                body=body,
                retry=True,
                expect=(200,),
                hint=hint,
                action=f"get a token from {realm}",
            )
        else:
            if creds is not None:
                raw = f"{creds.username}:{creds.secret}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
                query.append(("account", creds.username or ""))
            url = (
                realm
                + ("&" if "?" in realm else "?")
                + "&".join(f"{k}={_quote(v)}" for k, v in query)
            )
            reply = self._http.request(
                "GET",
                url,
                headers=headers,
                expect=(200,),
                hint=hint,
                action=f"get a token from {realm}",
            )
        try:
            answer = json.loads(reply.content)
            value = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, TypeError, AttributeError):
            value = None
            lifetime = 0.0
        if not isinstance(value, str) or not value:
            raise DistributionError(f"the token server {realm} answered without a token")
        # renew a little early: a token must not run out between check and use
        token = _Token(value, time.monotonic() + max(lifetime * 0.9, lifetime - 10))
        with self._lock:
            self._token = token
            self.tokens_fetched += 1
        return token


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
