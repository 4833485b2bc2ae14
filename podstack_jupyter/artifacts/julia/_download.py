"""Fetching one url to a file, with retries for transient failures and a sha256 of what arrived.

``http``/``https`` go through httpx (proxies from the environment, redirects followed);
``file://`` urls copy a local file (what ``publish`` writes without a server). A transient
failure (connection refused or reset, a timeout, a truncated body, HTTP 408/425/429/5xx) is
retried with backoff; anything else (404, a bad scheme) fails at once so the next mirror gets
its turn.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

from ...errors import ArtifactInstallError as DownloadError
from ...errors import InvalidArgumentError

__all__ = ["download", "DEFAULT_RETRIES"]

DEFAULT_RETRIES = 3
_CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Transient(Exception):
    pass


def _copy_hashing(chunks, out, bar) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        out.write(chunk)
        size += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return h.hexdigest(), size


def _file_chunks(f):
    while chunk := f.read(_CHUNK):
        yield chunk


def _bar(total: int | None, url: str):
    from .._base import progress_bar

    return progress_bar(total or 0, f"downloading {os.path.basename(urllib.parse.urlparse(url).path) or url}", None)


def _fetch_file_url(url: str, dest: Path) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise DownloadError(f"{url}: file:// urls must name a local path (file:///path)")
    source = Path(urllib.request.url2pathname(parsed.path))
    try:
        with open(source, "rb") as f, open(dest, "wb") as out:
            return _copy_hashing(_file_chunks(f), out, None)
    except FileNotFoundError:
        raise DownloadError(f"{url}: no such file {source}") from None
    except IsADirectoryError:
        raise DownloadError(f"{url}: {source} is a folder, not an archive") from None


def _fetch_http_once(client, url: str, dest: Path) -> tuple[str, int]:
    import httpx

    try:
        with client.stream("GET", url) as response:
            if response.status_code in _RETRY_STATUS:
                raise _Transient(f"HTTP {response.status_code} {response.reason_phrase}")
            if response.status_code >= 400:
                raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
            length = response.headers.get("content-length")
            expected = int(length) if length and length.isdigit() and "content-encoding" not in response.headers \
                else None
            bar = _bar(expected, url)
            try:
                with open(dest, "wb") as out:
                    digest, size = _copy_hashing(response.iter_bytes(_CHUNK), out, bar)
            finally:
                if bar is not None:
                    bar.close()
            if expected is not None and size != expected:
                raise _Transient(f"the server sent {size} of {expected} bytes")
            return digest, size
    except httpx.TransportError as exc:  # refused, reset, timed out, truncated
        raise _Transient(f"{type(exc).__name__}: {exc or 'connection failed'}") from None


def download(url: str, dest, retries: int = DEFAULT_RETRIES, timeout: float = 60.0,
             backoff: float = 0.5) -> tuple[str, int]:
    """Fetch ``url`` into the file ``dest``; returns ``(sha256 hex, size)`` of what arrived.

    Transient failures are retried up to ``retries`` more times (waiting ``backoff``, then twice
    that, ...); ``DownloadError`` says why the url could not be fetched.
    """
    if not isinstance(url, str):
        raise InvalidArgumentError(f"a download url must be a string, got {type(url).__name__}")
    dest = Path(dest)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == "file":
        return _fetch_file_url(url, dest)
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: unsupported url scheme {scheme or '(none)'!r}; use http(s):// or file://")
    import httpx

    failures = []
    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0))) as client:
        for attempt in range(retries + 1):
            try:
                return _fetch_http_once(client, url, dest)
            except _Transient as exc:
                failures.append(str(exc))
                if attempt < retries:
                    time.sleep(backoff * (2 ** attempt))
    raise DownloadError(f"{url}: failed {len(failures)} time(s): " + "; ".join(dict.fromkeys(failures)))
