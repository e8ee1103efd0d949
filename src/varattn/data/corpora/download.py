"""Fetching corpus files over HTTP(S) with the standard library only.

:func:`fetch` downloads a URL to a given path through a temporary file and an atomic rename (an
interrupted download never leaves a half file under the final name), retries transient failures with
exponential back-off, and reuses a file that is already there. Failures are :class:`DownloadError`, a
:class:`~varattn.errors.UserError` whose message names the URL and says to use ``--from DIR``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from varattn.data.textio import _UMASK
from varattn.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["DownloadError", "fetch", "default_cache_dir"]

_CHUNK = 1 << 16
_USER_AGENT = "varattn-data/1 (+https://github.com/)"


class DownloadError(UserError):
    """A download failed; ``status`` is the HTTP status when the server answered (404 ...), else None."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def default_cache_dir() -> Path:
    """``$VARATTN_CACHE`` or ``$XDG_CACHE_HOME/varattn`` or ``~/.cache/varattn``."""
    env = os.environ.get("VARATTN_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "varattn"


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` unless ``dest`` already exists; return ``dest``.

    Args:
        url: the address (http, https or file).
        dest: the final path; its folder is created.
        retries: further attempts after a failed one (client errors such as 404 are not retried).
        timeout: seconds a connection may stay silent.
        backoff: seconds before the first retry, doubled for each next one.
        progress: show a tqdm bar on a terminal.
    """
    dest = Path(dest)
    if dest.is_file():
        log.info("using cached %s", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    status: int | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
            log.warning("retrying %s (attempt %d of %d)", url, attempt + 1, retries + 1)
        try:
            _download_once(url, dest, timeout, progress)
            return dest
        except urllib.error.HTTPError as e:
            last, status = e, e.code
            if 400 <= e.code < 500 and e.code not in (408, 429):
                break
        except (urllib.error.URLError, OSError, ValueError) as e:
            last, status = e, None
            if isinstance(e, ValueError) or url.startswith("file:"):  # retrying will not help
                break
    if isinstance(last, urllib.error.HTTPError):
        reason = f"HTTP {last.code} {last.reason}"
    else:
        reason = getattr(last, "reason", None) or last
    raise DownloadError(
        f"{url}: download failed ({reason}) — check the network, or download the files yourself "
        f"and use from_dir=DIR with the files",
        status,
    )


def _download_once(url: str, dest: Path, timeout: float, progress: bool) -> None:
    from tqdm.auto import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            got = 0
            with tqdm(
                total=int(total) if total and total.isdigit() else None,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=None if progress else True,
                leave=False,
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            if total and total.isdigit() and got != int(total):
                raise OSError(f"connection closed after {got} of {total} bytes")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
