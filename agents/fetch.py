"""Fetch the bytes behind a document URI (``file://`` or ``http(s)://``) under a hard size limit.

Documents arrive as URIs inside events, so the worker fetching them is exposed to whatever the URI
points at. The size limit is enforced before the bytes are in memory: files are ``stat``-ed before
they are read, a larger ``Content-Length`` is refused before the body is read, and a streamed body is
counted while it arrives, because servers may omit or misstate ``Content-Length`` (chunked
transfer, compression) and buffering the whole response first would let one URI exhaust the
worker's memory. The count is over decoded bytes, so a compression bomb is cut off too.

Every failure is a :class:`FetchError` whose ``retryable`` flag tells the caller whether trying the
same URI later can help (timeouts, connection failures, 5xx, 429) or not (404, too large, bad URI),
so the workflow can choose between a retry topic and a dead-letter topic without parsing messages.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx

MAX_REDIRECTS = 5
_CHUNK_SIZE = 64 * 1024


class FetchError(Exception):
    """The document could not be fetched; ``retryable`` says whether a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class FetchedContent:
    """The raw bytes of a document and where they came from.

    ``uri`` is the URI the bytes were read from, i.e. the last URL of a redirect chain.
    ``content_type`` is the HTTP media type without parameters (``text/html``), or ``None`` when the
    source does not declare one (files, servers that omit the header).
    """

    uri: str
    data: bytes
    content_type: str | None


async def fetch(
    uri: str,
    *,
    max_bytes: int,
    timeout_s: float,
    client: httpx.AsyncClient | None = None,
) -> FetchedContent:
    """Return the content of ``uri``, refusing anything larger than ``max_bytes``.

    ``timeout_s`` applies to each network phase (connect, each read, write, pool wait) as in
    :class:`httpx.Timeout`; it is not used for files. ``client`` lets callers share a connection
    pool; without it a client is created for this call and closed afterwards.
    """
    scheme = urlparse(uri).scheme.lower()
    if scheme == "file":
        return await _fetch_file(uri, max_bytes)
    if scheme in ("http", "https"):
        if client is not None:
            return await _fetch_http(client, uri, max_bytes, httpx.Timeout(timeout_s))
        async with httpx.AsyncClient() as own_client:
            return await _fetch_http(own_client, uri, max_bytes, httpx.Timeout(timeout_s))
    raise FetchError(
        f"unsupported URI scheme {scheme!r} in {uri!r} (expected file, http or https)", retryable=False
    )


# --- file:// ---------------------------------------------------------------------------------------


def _file_path(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise FetchError(
            f"file URI {uri!r} names host {parsed.netloc!r}; only local files are supported", retryable=False
        )
    path = url2pathname(parsed.path)
    if not os.path.isabs(path):
        raise FetchError(f"file URI {uri!r} does not hold an absolute path", retryable=False)
    return path


async def _fetch_file(uri: str, max_bytes: int) -> FetchedContent:
    path = _file_path(uri)
    data = await asyncio.to_thread(_read_file, path, max_bytes)
    return FetchedContent(uri=uri, data=data, content_type=None)


def _read_file(path: str, max_bytes: int) -> bytes:
    try:
        st = os.stat(path)
        _check_file_stat(path, st, max_bytes)
        with open(path, "rb") as fh:
            # One byte more than allowed: catches a file that grew between stat and read.
            data = fh.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise FetchError(f"no such file: {path}", retryable=False) from exc
    except PermissionError as exc:
        raise FetchError(f"permission denied reading {path}", retryable=False) from exc
    except IsADirectoryError as exc:
        raise FetchError(f"{path} is a directory, not a document", retryable=False) from exc
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror or exc}", retryable=False) from exc
    if len(data) > max_bytes:
        raise FetchError(f"{path} grew past the limit of {max_bytes} bytes while being read", retryable=False)
    return data


def _check_file_stat(path: str, st: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise FetchError(f"{path} is a directory, not a document", retryable=False)
    if not stat.S_ISREG(st.st_mode):
        raise FetchError(f"{path} is not a regular file", retryable=False)
    if st.st_size > max_bytes:
        raise FetchError(f"document is {st.st_size} bytes, limit is {max_bytes} ({path})", retryable=False)


# --- http(s):// -------------------------------------------------------------------------------------


async def _fetch_http(
    client: httpx.AsyncClient, uri: str, max_bytes: int, timeout: httpx.Timeout
) -> FetchedContent:
    try:
        return await _follow_and_read(client, uri, max_bytes, timeout)
    except httpx.TimeoutException as exc:
        raise FetchError(f"timed out ({type(exc).__name__}) fetching {uri}", retryable=True) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise FetchError(f"cannot fetch {uri}: {exc}", retryable=False) from exc
    except httpx.TransportError as exc:
        raise FetchError(
            f"network error ({type(exc).__name__}) fetching {uri}: {exc}", retryable=True
        ) from exc
    except httpx.HTTPError as exc:
        raise FetchError(
            f"bad HTTP response ({type(exc).__name__}) from {uri}: {exc}", retryable=False
        ) from exc


async def _follow_and_read(
    client: httpx.AsyncClient, uri: str, max_bytes: int, timeout: httpx.Timeout
) -> FetchedContent:
    # Redirects are followed by hand so the cap holds whatever the (possibly shared) client's
    # own follow_redirects/max_redirects settings are.
    request = client.build_request("GET", uri, timeout=timeout)
    for _ in range(MAX_REDIRECTS + 1):
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            if response.next_request is None:
                return await _read_response(response, max_bytes)
            request = response.next_request
        finally:
            await response.aclose()
    raise FetchError(f"too many redirects (more than {MAX_REDIRECTS}) fetching {uri}", retryable=False)


async def _read_response(response: httpx.Response, max_bytes: int) -> FetchedContent:
    url = str(response.url)
    _check_status(response.status_code, url)
    declared = _declared_length(response)
    if declared is not None and declared > max_bytes:
        raise FetchError(
            f"document is {declared} bytes (Content-Length), limit is {max_bytes} ({url})", retryable=False
        )
    body = bytearray()
    async for piece in response.aiter_bytes(_CHUNK_SIZE):
        body += piece
        if len(body) > max_bytes:
            raise FetchError(f"document exceeds the limit of {max_bytes} bytes ({url})", retryable=False)
    return FetchedContent(uri=url, data=bytes(body), content_type=_media_type(response))


def _check_status(status: int, url: str) -> None:
    if 200 <= status < 300:
        return
    retryable = status >= 500 or status == 429
    raise FetchError(f"HTTP {status} from {url}", retryable=retryable)


def _declared_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def _media_type(response: httpx.Response) -> str | None:
    raw = response.headers.get("content-type")
    if raw is None:
        return None
    media_type = raw.split(";", 1)[0].strip().lower()
    return media_type or None
