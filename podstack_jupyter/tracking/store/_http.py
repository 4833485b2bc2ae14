"""The REST store's HTTP client for its JSON calls: keep-alive HTTP/1.1 connections of the
standard library, pooled per client.

A call to the server is small (a run, a batch of metric series): httpx spent 0.67 ms of CPU on
each against 0.19 ms here, a fifth of creating a run through the server. Large transfers
(artifact uploads and downloads through signed URLs) stay with httpx. Behind a proxy (the
``http_proxy`` variables name one for the server) the store uses httpx for its calls too.

:meth:`JSONClient.request` takes the arguments of ``httpx.Client.request`` that the store uses
and answers with the attributes of ``httpx.Response`` that it reads.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import urllib.request
from urllib.parse import urlencode, urlsplit

__all__ = ["JSONClient", "TransportError", "proxied"]


class TransportError(OSError):
    """The server could not be reached, or the connection broke before an answer came."""


def proxied(url: str) -> bool:
    """Whether the proxy variables of the environment route ``url`` through a proxy."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")


def _tls_context() -> ssl.SSLContext:
    # the certificates httpx would trust: SSL_CERT_FILE / SSL_CERT_DIR, else certifi's, else the system's
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"),
                                          capath=os.environ.get("SSL_CERT_DIR"))
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class Answer:
    """An HTTP answer, read whole."""

    def __init__(self, status: int, reason: str, headers: dict, content: bytes):
        self.status_code, self.reason_phrase, self.headers, self.content = status, reason, headers, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class JSONClient:
    """Requests to the server at ``base_url`` (``http(s)://host[:port]``) with ``headers`` on each;
    safe to use from several threads (each request takes a pooled connection of its own)."""

    def __init__(self, base_url: str, headers: dict, connect_timeout: float, read_timeout: float):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._headers = dict(headers)
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._context = _tls_context() if self._https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._connect_timeout,
                                               context=self._context)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        conn.connect()
        conn.sock.settimeout(self._read_timeout)
        return conn

    def request(self, method: str, url: str, *, content: bytes | None = None, params: dict | None = None,
                headers: dict | None = None) -> Answer:
        if not url.startswith(self._origin):
            raise ValueError(f"{url!r} is not on {self._origin}")
        target = url[len(self._origin):] or "/"
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        sent = {**self._headers, **(headers or {})}
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        while True:
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._connection()
                conn.request(method, target, body=content, headers=sent)
                response = conn.getresponse()
                answer = Answer(response.status, response.reason,
                                {k.lower(): v for k, v in response.getheaders()}, response.read())
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                if reused:  # the server closed the idle connection (its keep-alive ended): once more, anew
                    conn = None
                    continue
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            break
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
