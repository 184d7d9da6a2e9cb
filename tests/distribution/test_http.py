"""The shared HTTP client against small loopback servers that misbehave on purpose."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.httpd import LoopbackServer
from tests.support.reporting import RecordingReporter
from venvlayers._util.http import FileSlice, HttpClient, Reply, download_timeout, redact
from venvlayers.errors import TransferError

DATA = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Server:
    """A loopback server whose behaviour for a path is a function in `routes`."""

    host: str = "127.0.0.1"
    routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler, Seen], None]] = field(
        default_factory=dict
    )
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def start(self) -> Server:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers.items()), body)
                owner.seen.append(seen)
                route = owner.routes.get(self.path.partition("?")[0])
                if route is None:
                    send(self, 404, b"not here")
                else:
                    route(self, seen)

            do_GET = do_HEAD = do_PUT = do_POST = handle_any

        self._server = LoopbackServer(Handler, self.host).start()
        self.url = self._server.url
        return self

    def stop(self) -> None:
        self._server.stop()


def send(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def serve_ranges(
    handler: http.server.BaseHTTPRequestHandler, seen: Seen, data: bytes = DATA
) -> None:
    wanted = seen.headers.get("Range", "")
    if wanted.startswith("bytes="):
        start = int(wanted[6:].rstrip("-"))
        if start >= len(data):
            send(handler, 416)
            return
        part = data[start:]
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        send(handler, 206, part, headers)
    else:
        send(handler, 200, data)


def cut_off(handler: http.server.BaseHTTPRequestHandler, at: int, data: bytes = DATA) -> None:
    """Announce all of `data`, send `at` bytes, then drop the connection."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data[:at])
    handler.wfile.flush()
    handler.close_connection = True
    handler.connection.shutdown(2)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server().start()
    yield s
    s.stop()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    with HttpClient(backoff=0.01, retries=3, timeout=5) as c:
        yield c


def progress(reporter: RecordingReporter) -> int:
    return sum(int(v) for kind, _, v in reporter.events if kind == "advance")  # type: ignore[call-overload]


def test_download_verifies_and_reports(server: Server, client: HttpClient, tmp_path: Path) -> None:
    server.routes["/f"] = serve_ranges
    reporter = RecordingReporter()
    done = client.download(
        f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA), reporter=reporter
    )
    assert (tmp_path / "f").read_bytes() == DATA
    assert (done.size, done.received, done.resumed_from, done.attempts) == (
        len(DATA),
        len(DATA),
        0,
        1,
    )
    assert reporter.events[0] == ("begin", "download:f", len(DATA))
    assert reporter.events[-1] == ("end", "download:f", "done")
    assert progress(reporter) == len(DATA)
    assert not (tmp_path / "f.partial").exists()


def test_an_interrupted_download_resumes_with_range(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    calls = []

    def flaky(handler: http.server.BaseHTTPRequestHandler, seen: Seen) -> None:
        calls.append(seen.headers.get("Range"))
        if len(calls) == 1:
            cut_off(handler, 300_000)
        else:
            serve_ranges(handler, seen)

    server.routes["/f"] = flaky
    done = client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert (tmp_path / "f").read_bytes() == DATA
    assert calls[0] is None and calls[1] is not None and calls[1].startswith("bytes=")
    assert done.attempts == 2
    assert done.received < len(DATA) + 300_000  # the first part was not fetched twice


def test_a_partial_file_from_an_earlier_run_is_resumed(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = serve_ranges
    (tmp_path / "f.partial").write_bytes(DATA[:400_000])
    done = client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert done.resumed_from == 400_000
    assert done.received == len(DATA) - 400_000
    assert server.seen[-1].headers["Range"] == "bytes=400000-"
    assert (tmp_path / "f").read_bytes() == DATA


def test_a_server_ignoring_range_restarts_cleanly(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = lambda h, _s: send(h, 200, DATA)
    (tmp_path / "f.partial").write_bytes(DATA[:400_000])
    reporter = RecordingReporter()
    done = client.download(
        f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA), reporter=reporter
    )
    assert (tmp_path / "f").read_bytes() == DATA
    assert done.received == len(DATA) and done.resumed_from == 0
    assert progress(reporter) == len(DATA)


def test_a_bad_content_range_is_not_trusted(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    def liar(handler: http.server.BaseHTTPRequestHandler, seen: Seen) -> None:
        if "Range" in seen.headers:  # claims to resume but sends from byte 0
            send(handler, 206, DATA, {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}"})
        else:
            send(handler, 200, DATA)

    server.routes["/f"] = liar
    (tmp_path / "f.partial").write_bytes(DATA[:1000])
    done = client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert (tmp_path / "f").read_bytes() == DATA  # not DATA[:1000] + DATA
    assert "Range" in server.seen[0].headers and "Range" not in server.seen[1].headers
    assert done.resumed_from == 0


def test_a_stale_partial_of_another_file_is_redone(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = serve_ranges
    (tmp_path / "f.partial").write_bytes(b"x" * 1000)  # not a prefix of DATA
    done = client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert (tmp_path / "f").read_bytes() == DATA
    assert done.resumed_from == 0


def test_wrong_content_is_refused_and_nothing_is_left(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = lambda h, _s: send(h, 200, DATA[:-1] + b"!")
    with pytest.raises(TransferError, match=r"does not match its sha256"):
        client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert list(tmp_path.iterdir()) == []


def test_an_oversized_body_is_refused_while_streaming(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    def endless(handler: http.server.BaseHTTPRequestHandler, _seen: Seen) -> None:
        handler.send_response(200)  # no Content-Length: the body ends when we close
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        handler.wfile.write(DATA + DATA)

    server.routes["/f"] = endless
    with pytest.raises(TransferError, match="is oversized: more than the expected"):
        client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_announced_size_is_refused_before_reading(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = lambda h, _s: send(h, 200, DATA + DATA)
    with pytest.raises(TransferError, match="the server announces 2097152 bytes, expected"):
        client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert list(tmp_path.iterdir()) == []


def test_http_errors_are_one_line(server: Server, client: HttpClient, tmp_path: Path) -> None:
    with pytest.raises(TransferError) as caught:
        client.download(
            f"{server.url}/missing?X-Amz-Signature=secret",
            tmp_path / "f",
            sha256=SHA,
            hint="is the stack published?",
        )
    message = str(caught.value)
    assert message == (
        f"cannot download {server.url}/missing: HTTP 404 Not Found (is the stack published?)"
    )
    assert "secret" not in message


def test_5xx_and_429_are_retried(server: Server, client: HttpClient, tmp_path: Path) -> None:
    answers = iter([503, 429, 500])

    def busy(handler: http.server.BaseHTTPRequestHandler, seen: Seen) -> None:
        status = next(answers, None)
        if status is None:
            serve_ranges(handler, seen)
        else:
            send(handler, status, b"busy", {"Retry-After": "0"})

    server.routes["/f"] = busy
    client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    assert len(server.seen) == 4


def test_retries_give_up(server: Server, client: HttpClient) -> None:
    server.routes["/f"] = lambda h, _s: send(h, 502, b"")
    with pytest.raises(TransferError, match="HTTP 502"):
        client.request("GET", f"{server.url}/f", expect=(200,))
    assert len(server.seen) == client.retries + 1


def test_post_is_not_retried_unless_asked(server: Server, client: HttpClient) -> None:
    server.routes["/p"] = lambda h, _s: send(h, 503, b"")
    reply = client.request("POST", f"{server.url}/p", body=b"x")
    assert reply.status == 503 and len(server.seen) == 1


def test_a_refused_connection_is_a_clear_error(tmp_path: Path) -> None:
    from tests.plugins.registry import free_port

    with HttpClient(backoff=0.01, retries=1) as client, pytest.raises(TransferError) as caught:
        client.download(f"http://127.0.0.1:{free_port()}/f", tmp_path / "f", sha256=SHA)
    assert "connection refused" in str(caught.value)


def test_a_stalled_read_times_out(server: Server, tmp_path: Path) -> None:
    release = threading.Event()

    def stall(handler: http.server.BaseHTTPRequestHandler, _seen: Seen) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(DATA)))
        handler.end_headers()
        handler.wfile.write(DATA[:1000])
        handler.wfile.flush()
        release.wait(10)

    server.routes["/f"] = stall
    with (
        HttpClient(backoff=0.01, retries=0, timeout=0.3) as client,
        pytest.raises(TransferError, match=r"no data for 0\.3s after 1000 bytes"),
    ):
        client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, size=len(DATA))
    release.set()


def test_the_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VENVLAYERS_DOWNLOAD_TIMEOUT", "7.5")
    assert download_timeout() == 7.5
    assert download_timeout(3) == 3
    monkeypatch.setenv("VENVLAYERS_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(TransferError, match="VENVLAYERS_DOWNLOAD_TIMEOUT='soon'"):
        download_timeout()
    monkeypatch.delenv("VENVLAYERS_DOWNLOAD_TIMEOUT")
    assert download_timeout() == 60


def test_plain_http_only_to_loopback() -> None:
    with HttpClient() as client:
        with pytest.raises(TransferError, match=r"refusing plain http to example\.com"):
            client.request("GET", "http://example.com/x")
        client.check_url("http://127.0.0.5:1/x")
        client.check_url("http://localhost:1/x")
        client.check_url("http://[::1]:1/x")
    with HttpClient(insecure=True) as client:
        client.check_url("http://example.com/x")


class Hook:
    """An auth hook that hands out a new token after each challenge."""

    def __init__(self) -> None:
        self.token = 0
        self.challenges = 0

    def headers(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer t{self.token}"} if self.token else {}

    def challenged(self, reply: Reply) -> bool:
        self.challenges += 1
        self.token += 1
        return True


def test_credentials_never_follow_a_redirect_to_another_host(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    try:
        storage = Server(host="127.0.0.2").start()
    except OSError as exc:
        pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
    try:
        storage.routes["/blob"] = serve_ranges

        def registry(handler: http.server.BaseHTTPRequestHandler, seen: Seen) -> None:
            if not seen.headers.get("Authorization", "").startswith("Bearer "):
                send(handler, 401, b"", {"WWW-Authenticate": 'Bearer realm="x"'})
            else:
                send(handler, 307, b"", {"Location": f"{storage.url}/blob?sig=1"})

        server.routes["/v2/blob"] = registry
        hook = Hook()
        client.download(
            f"{server.url}/v2/blob",
            tmp_path / "b",
            sha256=SHA,
            size=len(DATA),
            auth=hook,
            headers={"Authorization": "Basic c2VjcmV0"},
        )
        assert (tmp_path / "b").read_bytes() == DATA
        assert hook.challenges == 1
        assert storage.seen and all("Authorization" not in s.headers for s in storage.seen)
        assert server.seen[-1].headers["Authorization"] == "Bearer t1"
    finally:
        storage.stop()


def test_a_redirect_from_https_to_http_is_refused(client: HttpClient) -> None:
    with pytest.raises(TransferError, match="refusing the redirect"):
        client._check_redirect("https://registry.example/v2/x", "http://storage.example/x")


def test_uploads_stream_from_a_file(server: Server, client: HttpClient, tmp_path: Path) -> None:
    server.routes["/up"] = lambda h, _s: send(h, 201)
    path = tmp_path / "data"
    path.write_bytes(DATA)
    sent: list[int] = []
    reply = client.request(
        "PUT",
        f"{server.url}/up",
        body=FileSlice(path, 1000, 5000),
        expect=(201,),
        progress=sent.append,
    )
    assert reply.status == 201
    assert server.seen[-1].body == DATA[1000:6000]
    assert server.seen[-1].headers["Content-Length"] == "5000"
    assert sum(sent) == 5000


def test_a_retried_upload_sends_the_whole_body_again(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    answers = iter([500, 201])
    server.routes["/up"] = lambda h, _s: send(h, next(answers))
    path = tmp_path / "data"
    path.write_bytes(DATA)
    client.request("PUT", f"{server.url}/up", body=FileSlice(path), expect=(201,))
    assert [s.body == DATA for s in server.seen] == [True, True]


def test_redact() -> None:
    assert redact("https://u:p@h:1/a/b?sig=x#f") == "https://h:1/a/b"


def test_small_files_are_read_whole_and_bounded(server: Server, client: HttpClient) -> None:
    server.routes["/meta.json"] = lambda h, _s: send(h, 200, b'{"layers": {}}')
    assert client.get_bytes(f"{server.url}/meta.json") == b'{"layers": {}}'
    with pytest.raises(TransferError, match="sent more than 4 bytes"):
        client.get_bytes(f"{server.url}/meta.json", max_size=4)
    with pytest.raises(TransferError, match=r"HTTP 404 Not Found \(is it published\?\)"):
        client.get_bytes(f"{server.url}/nothing.json", hint="is it published?")


def test_a_partial_longer_than_the_file_starts_over(
    server: Server, client: HttpClient, tmp_path: Path
) -> None:
    server.routes["/f"] = serve_ranges
    (tmp_path / "f.partial").write_bytes(DATA + b"extra")  # no size given: only 416 tells
    reporter = RecordingReporter()
    done = client.download(f"{server.url}/f", tmp_path / "f", sha256=SHA, reporter=reporter)
    assert (tmp_path / "f").read_bytes() == DATA and done.resumed_from == 0
    assert progress(reporter) == len(DATA)
