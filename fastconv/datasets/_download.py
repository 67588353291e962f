"""Fetching a file from a list of mirrors, atomically, with only the standard library.

A download streams into a temporary file in the destination folder and is renamed into place
only after the caller's check (decompression, format, sha256) passes. ``os.replace`` within one
folder is atomic, so an interrupted or rejected download leaves no file behind, and two
processes downloading at once each finish with a complete file or none.
"""
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request

__all__ = ["DOWNLOAD_TIMEOUT", "fetch_verified"]

log = logging.getLogger("fastconv.datasets")

# Seconds a connect or a single read may stall before the mirror counts as failed.
DOWNLOAD_TIMEOUT = 30.0
_CHUNK = 1 << 16


def _describe(exc):
    """Short, user-facing reason for a failed attempt."""
    if hasattr(exc, "problem"):
        # A DataFileError names the temporary file; the URL already says which download it was.
        return exc.problem
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class IncompleteDownload(OSError):
    """The server closed the connection before sending the announced length."""


def _stream(url, dest, timeout):
    """Copy ``url`` into the open binary file ``dest``; raise if the body is cut short."""
    received = 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        expected = response.headers.get("Content-Length")
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                dest.write(chunk)
                received += len(chunk)
        except http.client.IncompleteRead as exc:
            received += len(exc.partial)
            raise IncompleteDownload(f"connection closed after {received} of {expected} "
                                     f"bytes") from None
    # Some short bodies end without IncompleteRead (read() just returns b""); comparing with
    # Content-Length keeps those partial files from reaching the content check.
    if expected is not None and received != int(expected):
        raise IncompleteDownload(f"connection closed after {received} of {expected} bytes")


def fetch_verified(name, folder, mirrors, check, timeout=DOWNLOAD_TIMEOUT):
    """Download ``name`` from the first mirror whose bytes pass ``check``.

    Parameters
    ----------
    name : str
        File name, appended to each mirror's base URL.
    folder : pathlib.Path
        Destination folder (created if missing); the file ends up as ``folder / name``.
    mirrors : sequence of str
        Base URLs tried in turn.
    check : callable
        ``check(path) -> result``; raises on bad content (wrong page, wrong hash, truncation).
    timeout : float
        Socket timeout in seconds for each attempt.

    Returns
    -------
    result : object
        What ``check`` returned for the accepted file.
    attempts : list of (str, str)
        ``(url, reason)`` for every mirror that failed before the accepted one.
    ok : bool
        False when every mirror failed (``result`` is then None).
    """
    folder.mkdir(parents=True, exist_ok=True)
    attempts = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        try:
            log.info("downloading %s", url)
            with os.fdopen(fd, "wb") as f:
                _stream(url, f, timeout)
            result = check(tmp)
            os.replace(tmp, folder / name)
            return result, attempts, True
        except Exception as exc:  # any failure of one mirror means: try the next one
            attempts.append((url, _describe(exc)))
            log.info("%s failed: %s", url, attempts[-1][1])
        finally:
            # Also runs on KeyboardInterrupt: an interrupted download leaves nothing behind.
            if os.path.exists(tmp):
                os.unlink(tmp)
    return None, attempts, False
