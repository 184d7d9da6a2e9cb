"""Real OCI registries for the tests: Debian's `docker-registry` (the distribution server).

Fixtures (session-scoped servers, skipped cleanly when `/usr/bin/docker-registry` is
missing; each test uses its own repository names, so they do not see each other):

- `registry`: anonymous, filesystem storage in a temporary directory, deletes enabled.
- `tls_registry`: over https, with a self-signed certificate for 127.0.0.1 (`.ca`).
- `htpasswd_registry`: Basic auth for user `alice` (password `wonderland`); the bcrypt
  file is made by `htpasswd -B` when apache2-utils is installed, else by the C
  library's `crypt` (libxcrypt knows bcrypt).
- `token_registry`: Bearer token auth against `TokenServer`, a small token endpoint in
  a thread that signs RS256 JWTs with a key and self-signed certificate made with
  `cryptography` (the registry trusts that certificate). Anonymous users may pull,
  `alice` (or the holder of `REFRESH_TOKEN`, by POST) may push;
  `token_registry.tokens.lifetime` shortens the tokens' life.
- `proxy` (function): a `CountingProxy` in front of `registry` that records every
  request (method, path, bytes each way, Authorization) and can misbehave on demand:
  cap request bodies, announce `OCI-Chunk-Min-Length`, redirect blob downloads to a
  `BlobServer` on 127.0.0.2, slow down or delay responses.
- `token_proxy` (function): the same in front of `token_registry`.

Register with `pytest_plugins = ["tests.plugins.registry"]` in tests/conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import datetime
import http.client
import http.server
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.httpd import LoopbackServer

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
USER, PASSWORD = "alice", "wonderland"
REFRESH_TOKEN = "alice-refresh-token"
# distribution accepts tokens this long past their `exp` (clock skew leeway)
TOKEN_LEEWAY = 60


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    """A running registry: `host` is what goes after `oci://`."""

    host: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    auth: str = "none"
    tokens: TokenServer | None = None
    ca: Path | None = None
    """The certificate to trust, when the registry speaks TLS."""

    def ref(self, repository: str, tag: str = "v1") -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes on disk."""
        hexdigest = digest.removeprefix("sha256:")
        return self.root / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"


def _config(root: Path, port: int, auth: str, tls: tuple[Path, Path] | None = None) -> str:
    tls_block = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
    return f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secrets.token_hex(16)}
{tls_block}{auth}"""


def _start(
    tmp: Path, auth_config: str = "", auth: str = "none", tls: tuple[Path, Path] | None = None
) -> Registry:
    if not REGISTRY_BINARY.exists():
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    root = tmp / "storage"
    root.mkdir(parents=True)
    config = tmp / "config.yml"
    config.write_text(_config(root, port, auth_config, tls))
    log = tmp / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REGISTRY_BINARY), "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": os.defpath, "HOME": str(tmp)},
        )
    registry = Registry(f"127.0.0.1:{port}", root, process, log, auth, ca=tls[0] if tls else None)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited at start:\n{log.read_text()}")
        try:
            if tls:
                unverified = ssl._create_unverified_context()
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", port, timeout=2, context=unverified
                )
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return registry
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail(f"docker-registry did not start:\n{log.read_text()}")


def _stop(registry: Registry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(10)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    server = _start(tmp_path_factory.mktemp("registry"))
    yield server
    _stop(server)


def self_signed(tmp: Path, name: str, *, ca: bool = False) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files in `tmp`)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry over https with a self-signed certificate (`registry.ca`)."""
    tmp = tmp_path_factory.mktemp("tls-registry")
    server = _start(tmp, tls=self_signed(tmp, "registry"))
    yield server
    _stop(server)


# -- htpasswd ---------------------------------------------------------------------------


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line with a bcrypt hash, from `htpasswd` or the C library."""
    tool = shutil.which("htpasswd")
    if tool:
        out = subprocess.run(
            [tool, "-nbB", user, password], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
        gensalt, crypt = lib.crypt_gensalt, lib.crypt
    except (OSError, AttributeError):
        pytest.skip("neither htpasswd nor a bcrypt-capable libcrypt is available")
    gensalt.restype = ctypes.c_char_p
    gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = gensalt(b"$2b$", 5, None, 0)
    hashed = crypt(password.encode(), salt) if salt else None
    if not hashed or not hashed.startswith(b"$2"):
        pytest.skip("the C library's crypt cannot make bcrypt hashes")
    return f"{user}:{hashed.decode()}"


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("htpasswd-registry")
    (tmp / "htpasswd").write_text(bcrypt_line(USER, PASSWORD) + "\n")
    auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {tmp / 'htpasswd'}\n"
    server = _start(tmp, auth, "htpasswd")
    yield server
    _stop(server)


# -- token auth -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """A token endpoint (the docker token spec) issuing RS256 JWTs; in its own thread.

    Anonymous requests get pull access only; `alice:wonderland` gets what she asks for;
    wrong credentials get a 401. `issued` lists (account, scopes) of every token.
    """

    service = "test-registry"
    issuer = "test-token-issuer"

    def __init__(self, tmp: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.bundle = tmp / "token-cert.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.lifetime = 300.0
        self.announced: float | None = None
        """`expires_in` to claim, when it should differ from the real `lifetime`."""
        self.issued: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        self.server = LoopbackServer(self._handler()).start()
        self.port = self.server.port
        self.realm = f"{self.server.url}/token"

    def sign(self, claims: dict[str, object]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def issue(self, account: str, scopes: list[str]) -> dict[str, object]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if account == USER else [a for a in wanted if a == "pull"]
            access.append({"type": kind, "name": repo, "actions": granted})
        now = int(time.time())
        # the registry adds its leeway to `exp`: subtract it so `lifetime` is real
        expires = now + int(self.lifetime) - TOKEN_LEEWAY
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": expires,
            "nbf": now - 5,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        with self.lock:
            self.issued.append((account, scopes))
        claimed = int(self.announced if self.announced is not None else self.lifetime)
        return {"token": self.sign(claims), "expires_in": claimed}

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(parts.query)
                account = ""
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if (user, password) != (USER, PASSWORD):
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    account = user
                self._reply(owner.issue(account, query.get("scope", [])))

            def do_POST(self) -> None:
                """The OAuth2 refresh-token grant (`identitytoken` in a docker config)."""
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
                    REFRESH_TOKEN
                ]:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scopes = " ".join(form.get("scope", [])).split()
                self._reply(owner.issue(USER, scopes))

            def _reply(self, answer: dict[str, object]) -> None:
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(tmp)
    auth = (
        "auth:\n  token:\n"
        f"    realm: {tokens.realm}\n"
        f"    service: {tokens.service}\n"
        f"    issuer: {tokens.issuer}\n"
        f"    rootcertbundle: {tokens.bundle}\n"
    )
    server = _start(tmp, auth, "token")
    server.tokens = tokens
    yield server
    _stop(server)
    tokens.close()


# -- a counting, misbehaving proxy ------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    query: str
    status: int
    sent: int
    """Request body bytes (client -> registry)."""
    received: int
    """Response body bytes (registry -> client)."""
    authorization: str | None
    headers: dict[str, str] = field(default_factory=dict, compare=False)


_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class CountingProxy:
    """An HTTP proxy in front of a registry that records and can disturb requests.

    Knobs (set them in a test): `max_body` (413 for bigger request bodies),
    `chunk_min` (sent as `OCI-Chunk-Min-Length` on upload starts), `redirect_blobs`
    (a `BlobServer`: blob GETs answer 307 there), `slow_blobs` (seconds between 16 KiB
    pieces of blob downloads), `delay` (a function of (method, path) returning seconds
    to wait before forwarding), `fail` (a function of (method, path) returning a status
    to answer instead of forwarding, or None). `started` is set when a blob transfer
    (upload body or download) begins.
    """

    def __init__(self, upstream: Registry) -> None:
        self.upstream = upstream
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.max_body: int | None = None
        self.chunk_min: int | None = None
        self.redirect_blobs: BlobServer | None = None
        self.slow_blobs = 0.0
        self.delay: Callable[[str, str], float] | None = None
        self.fail: Callable[[str, str], int | None] | None = None
        self.started = threading.Event()
        self.server = LoopbackServer(self._handler()).start()
        self.host = f"127.0.0.1:{self.server.port}"

    def ref(self, repository: str, tag: str = "v1") -> str:
        return f"oci://{self.host}/{repository}:{tag}"

    def clear(self) -> None:
        with self.lock:
            self.hits.clear()

    def blob_gets(self) -> list[Hit]:
        return [h for h in self.hits if h.method == "GET" and "/blobs/sha256:" in h.path]

    def uploads(self) -> list[Hit]:
        return [
            h for h in self.hits if h.method in ("PUT", "PATCH") and "/blobs/uploads/" in h.path
        ]

    def bytes_sent(self) -> int:
        return sum(h.sent for h in self.hits)

    def bytes_received(self) -> int:
        return sum(h.received for h in self.hits)

    def close(self) -> None:
        self.server.stop()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                if owner.max_body is not None and length > owner.max_body:
                    return None
                if length and "/blobs/uploads/" in self.path:
                    owner.started.set()
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD" and body:
                    if owner.slow_blobs and "/blobs/sha256:" in self.path:
                        owner.started.set()
                        for i in range(0, len(body), 16384):
                            self.wfile.write(body[i : i + 16384])
                            self.wfile.flush()
                            time.sleep(owner.slow_blobs)
                    else:
                        self.wfile.write(body)

            def _record(self, status: int, sent: int, received: int) -> None:
                parts = urllib.parse.urlsplit(self.path)
                hit = Hit(
                    self.command,
                    parts.path,
                    parts.query,
                    status,
                    sent,
                    received,
                    self.headers.get("Authorization"),
                    dict(self.headers.items()),
                )
                with owner.lock:
                    owner.hits.append(hit)

            def _forward(self) -> None:
                body = self._body()
                if body is None:
                    self.close_connection = True
                    self._record(413, 0, 0)
                    self._answer(413, {"Content-Length": "0", "Connection": "close"}, b"")
                    return
                failing = owner.fail(self.command, self.path) if owner.fail else None
                if failing:
                    self._record(failing, len(body), 0)
                    self._answer(failing, {"Content-Length": "0"}, b"")
                    return
                if owner.delay:
                    time.sleep(owner.delay(self.command, self.path))
                target = owner.redirect_blobs
                if target and self.command == "GET" and "/blobs/sha256:" in self.path:
                    digest = self.path.rpartition("/")[2].partition("?")[0]
                    location = f"{target.url}/storage/{digest}?X-Signature=s3cr3t"
                    self._record(307, 0, 0)
                    self._answer(307, {"Location": location, "Content-Length": "0"}, b"")
                    return
                host, _, port = owner.upstream.host.partition(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                conn.close()
                out = {k: v for k, v in response.getheaders() if k.lower() not in _HOP}
                if self.command != "HEAD":
                    out["Content-Length"] = str(len(data))
                if owner.chunk_min and self.command == "POST" and response.status == 202:
                    out["OCI-Chunk-Min-Length"] = str(owner.chunk_min)
                self._record(response.status, len(body), len(data))
                self._answer(response.status, out, data)

            do_GET = do_HEAD = do_PUT = do_PATCH = do_POST = do_DELETE = _forward

        return Handler


class BlobServer:
    """'Object storage' on 127.0.0.2: serves a registry's blobs from its disk directly.

    Records the headers of every request in `requests`, so tests can check that no
    registry credentials arrived here.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.requests: list[dict[str, str]] = []
        self.server = LoopbackServer(self._handler(), "127.0.0.2").start()
        self.url = self.server.url

    def close(self) -> None:
        self.server.stop()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(dict(self.headers.items()))
                digest = urllib.parse.urlsplit(self.path).path.rpartition("/")[2]
                path = owner.registry.blob_file(digest)
                data = path.read_bytes() if path.exists() else None
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def proxy(registry: Registry) -> Iterator[CountingProxy]:
    server = CountingProxy(registry)
    yield server
    server.close()


@pytest.fixture
def token_proxy(token_registry: Registry) -> Iterator[CountingProxy]:
    server = CountingProxy(token_registry)
    yield server
    server.close()


@pytest.fixture
def blob_server(registry: Registry) -> Iterator[BlobServer]:
    try:
        server = BlobServer(registry)
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    yield server
    server.close()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a `config.json` in a fresh `$DOCKER_CONFIG` (and no other auth file)."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)

    def write(content: dict[str, object]) -> Path:
        path = directory / "config.json"
        path.write_text(json.dumps(content))
        return path

    write({})
    return write


def auth_entry(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@contextlib.contextmanager
def no_auth_files(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> Iterator[None]:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield
