"""agents.fetch against real files and a real HTTP server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from agents.fetch import MAX_REDIRECTS, FetchedContent, FetchError, fetch

LIMIT = 100_000
OK_BODY = b"hello riverbed\n"
SLOW_DELAY_S = 2.0
STREAM_PIECE = b"x" * 65_536
STREAM_TOTAL = 256 * 1024 * 1024  # far more than any test reads; the client must hang up first


@dataclass
class ServerState:
    # Set at teardown so handlers that hold a request open (slow, declared-too-large) return at once.
    release: threading.Event = field(default_factory=threading.Event)
    # Set by the streaming handler when the client hangs up before the body is complete.
    stream_aborted: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread: nothing outlives the fixture

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # needed for chunked transfer encoding
    timeout = 5  # an idle keep-alive connection cannot pin a handler thread for long
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        name = "_route_" + self.path.strip("/").replace("-", "_")
        route: Callable[[], None] | None = getattr(self, name, None)
        try:
            if route is None:
                self._send(404, b"not found\n")
            else:
                route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, which several tests expect

    def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route_ok(self) -> None:
        self._send(200, OK_BODY)

    def _route_exact(self) -> None:
        self._send(200, b"e" * LIMIT, content_type="application/octet-stream")

    def _route_unavailable(self) -> None:
        self._send(503, b"try later\n")

    def _route_throttled(self) -> None:
        self._send(429, b"slow down\n")

    def _route_forbidden(self) -> None:
        self._send(403, b"no\n")

    def _route_redirect(self) -> None:
        self._redirect("/ok")

    def _route_loop(self) -> None:
        self._redirect("/loop")

    def _route_slow(self) -> None:
        self.server.state.release.wait(SLOW_DELAY_S)
        self._send(200, b"too late\n")

    def _route_big_declared(self) -> None:
        # Headers promise a body larger than the limit; the body itself never comes, so a client
        # that tried to read it would time out instead of refusing.
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(LIMIT * 100))
        self.end_headers()
        self.wfile.flush()
        self.server.state.release.wait(SLOW_DELAY_S)
        self.close_connection = True

    def _route_big_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(STREAM_TOTAL // len(STREAM_PIECE)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(STREAM_PIECE), STREAM_PIECE))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.server.state.stream_aborted.set()
        self.close_connection = True


@dataclass
class LiveServer:
    url: str
    state: ServerState


@pytest.fixture
def server() -> Iterator[LiveServer]:
    state = ServerState()
    httpd = _Server(state)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="test-http-server")
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield LiveServer(url=f"http://{host!s}:{port}", state=state)
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


async def _fetch_error(uri: str, *, timeout_s: float = 5.0, max_bytes: int = LIMIT) -> FetchError:
    with pytest.raises(FetchError) as info:
        await fetch(uri, max_bytes=max_bytes, timeout_s=timeout_s)
    return info.value


# --- HTTP -------------------------------------------------------------------------------------------


async def test_http_ok_returns_body_and_media_type_without_params(server: LiveServer) -> None:
    got = await fetch(f"{server.url}/ok", max_bytes=LIMIT, timeout_s=5)
    assert got == FetchedContent(uri=f"{server.url}/ok", data=OK_BODY, content_type="text/plain")


async def test_http_body_of_exactly_the_limit_is_accepted(server: LiveServer) -> None:
    got = await fetch(f"{server.url}/exact", max_bytes=LIMIT, timeout_s=5)
    assert len(got.data) == LIMIT
    assert got.content_type == "application/octet-stream"


async def test_http_streamed_body_over_limit_is_cut_off(server: LiveServer) -> None:
    err = await _fetch_error(f"{server.url}/big-stream")
    assert err.retryable is False
    assert f"limit of {LIMIT} bytes" in str(err)
    # The server was still sending (it has 256 MiB to send) when the client hung up.
    assert server.state.stream_aborted.wait(timeout=10)


async def test_http_declared_length_over_limit_is_refused_before_reading(server: LiveServer) -> None:
    # The handler never sends the body: reading it would end in a (retryable) timeout instead.
    err = await _fetch_error(f"{server.url}/big-declared", timeout_s=1.0)
    assert err.retryable is False
    assert f"document is {LIMIT * 100} bytes (Content-Length), limit is {LIMIT}" in str(err)


async def test_http_404_is_permanent_and_names_the_url(server: LiveServer) -> None:
    err = await _fetch_error(f"{server.url}/missing")
    assert err.retryable is False
    assert str(err) == f"HTTP 404 from {server.url}/missing"


async def test_http_403_is_permanent(server: LiveServer) -> None:
    err = await _fetch_error(f"{server.url}/forbidden")
    assert err.retryable is False
    assert "HTTP 403" in str(err)


@pytest.mark.parametrize(("path", "status"), [("/unavailable", 503), ("/throttled", 429)])
async def test_http_5xx_and_429_are_retryable(server: LiveServer, path: str, status: int) -> None:
    err = await _fetch_error(f"{server.url}{path}")
    assert err.retryable is True
    assert str(err) == f"HTTP {status} from {server.url}{path}"


async def test_http_timeout_is_retryable_and_does_not_wait_for_the_server(server: LiveServer) -> None:
    started = time.monotonic()
    err = await _fetch_error(f"{server.url}/slow", timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert err.retryable is True
    assert "timed out" in str(err)
    assert elapsed < SLOW_DELAY_S  # the server would have answered after SLOW_DELAY_S


async def test_http_redirect_is_followed_and_uri_is_the_final_url(server: LiveServer) -> None:
    got = await fetch(f"{server.url}/redirect", max_bytes=LIMIT, timeout_s=5)
    assert got.data == OK_BODY
    assert got.uri == f"{server.url}/ok"


async def test_http_redirect_loop_stops_at_the_cap_even_with_a_permissive_client(server: LiveServer) -> None:
    async with httpx.AsyncClient(follow_redirects=True, max_redirects=50) as client:
        with pytest.raises(FetchError) as info:
            await fetch(f"{server.url}/loop", max_bytes=LIMIT, timeout_s=5, client=client)
        assert info.value.retryable is False
        assert f"more than {MAX_REDIRECTS}" in str(info.value)
        # A caller's client is borrowed, not closed.
        assert not client.is_closed
        again = await fetch(f"{server.url}/ok", max_bytes=LIMIT, timeout_s=5, client=client)
        assert again.data == OK_BODY


async def test_http_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    err = await _fetch_error(f"http://127.0.0.1:{port}/doc")
    assert err.retryable is True
    assert "ConnectError" in str(err)


# --- file:// and schemes ----------------------------------------------------------------------------


async def test_file_uri_is_read_without_content_type(tmp_path: Path) -> None:
    path = tmp_path / "a doc with spaces.md"  # as_uri() percent-encodes the spaces
    path.write_bytes(b"# Title\n")
    got = await fetch(path.as_uri(), max_bytes=LIMIT, timeout_s=5)
    assert got == FetchedContent(uri=path.as_uri(), data=b"# Title\n", content_type=None)


async def test_file_at_limit_is_accepted_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(b"a" * 10)
    assert len((await fetch(path.as_uri(), max_bytes=10, timeout_s=5)).data) == 10
    err = await _fetch_error(path.as_uri(), max_bytes=9)
    assert err.retryable is False
    assert str(err).startswith("document is 10 bytes, limit is 9")


async def test_missing_file_is_permanent(tmp_path: Path) -> None:
    err = await _fetch_error((tmp_path / "nope.txt").as_uri())
    assert err.retryable is False
    assert "no such file" in str(err)


async def test_directory_is_refused(tmp_path: Path) -> None:
    err = await _fetch_error(tmp_path.as_uri())
    assert err.retryable is False
    assert "is a directory" in str(err)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("ftp://example.com/doc.txt", "unsupported URI scheme 'ftp'"),
        ("s3://bucket/key", "unsupported URI scheme 's3'"),
        ("/etc/hostname", "unsupported URI scheme ''"),
        ("file:relative/doc.txt", "absolute path"),
        ("file://otherhost/doc.txt", "only local files"),
    ],
)
async def test_unusable_uris_are_permanent(uri: str, fragment: str) -> None:
    err = await _fetch_error(uri)
    assert err.retryable is False
    assert fragment in str(err)
