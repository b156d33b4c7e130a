"""httpx's transport for the Segmind client, over aiohttp.

httpx stays the API client (its requests, responses, timeouts and errors); aiohttp moves
the bytes. httpcore reads an answer 64 KB at a time through anyio, about a third as fast
as aiohttp (encode/httpx#3215): a 2.4 MB picture took 10 ms instead of 3.5 ms, and a
member waits for exactly that after the image is made.

Errors map to httpx's by what the client must know for money: whether the request can
have reached the API. Only a failure to connect (`httpx.ConnectError`,
`httpx.ConnectTimeout`) says it did not; anything after that (a dropped connection, a
broken answer) is a `httpx.ReadError` or `httpx.RemoteProtocolError`, whose fate is
unknown, so it is never retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import yarl
from aiohttp.helpers import get_env_proxy_for_url

log = logging.getLogger(__name__)

# Pieces of an answer read at a time: a 2.4 MB picture in about ten.
CHUNK_BYTES = 256 * 1024
_Proxy = tuple[yarl.URL | None, aiohttp.BasicAuth | None]


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except (aiohttp.ClientError, OSError) as exc:
        log.debug("%s %s failed: %s", request.method, request.url, type(exc).__name__)
        raise _httpx_error(exc, request) from exc


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # before ServerTimeoutError: a subclass
        return httpx.ConnectTimeout(text, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # no byte within the read timeout
        return httpx.ReadTimeout(text, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS: nothing was sent
        return httpx.ConnectError(text, request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # an answer that is not HTTP
        return httpx.RemoteProtocolError(text, request=request)
    # Dropped while sending or reading: the API may have the request.
    return httpx.ReadError(text, request=request)


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_chunked(CHUNK_BYTES):
                yield chunk

    async def aclose(self) -> None:
        # Back to the pool when read to the end; closed otherwise.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (made in the running loop at the first request) for a client."""

    def __init__(self, *, max_connections: int, keepalive_s: float = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY and NO_PROXY, read once per host (as httpx reads them once per
        # client): aiohttp's trust_env looks them up in a thread for every request, a
        # hop on the way of every edit's call.
        self._proxies: dict[tuple[str, str | None, int | None], _Proxy] = {}

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_s
            )
            # No cookies, no ~/.netrc login for the API; proxies are looked up by `_proxy_for`.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        log.debug("%s %s", request.method, request.url)  # never the headers: the key is one
        url = yarl.URL(str(request.url))
        proxy, proxy_auth = await self._proxy_for(url)
        with _as_httpx_errors(request):
            response = await self._session_now().request(
                request.method,
                url,
                proxy=proxy,
                proxy_auth=proxy_auth,
                headers=list(request.headers.multi_items()),
                data=await request.aread() or None,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes what the headers say
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _proxy_for(self, url: yarl.URL) -> _Proxy:
        """The operator's proxy for `url` (HTTP(S)_PROXY, unless NO_PROXY spares its host)."""
        key = (url.scheme, url.host, url.port)
        if key not in self._proxies:
            try:
                # In a thread, as aiohttp does: on some systems the lookup blocks.
                found = await asyncio.to_thread(get_env_proxy_for_url, url)
            except LookupError:
                found = (None, None)
            self._proxies[key] = found
        return self._proxies[key]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
