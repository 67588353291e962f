"""Fetching a file from a list of mirrors, atomically and resumably, with only the standard
library.

A download streams into ``.NAME.part`` in the destination folder and is renamed into place
only after the caller's check (decompression, format, sha256) passes. ``os.replace`` within one
folder is atomic, so a cut or rejected download never leaves a file under the final name, and
two processes downloading at once each finish with a complete file or none.

A connection cut short keeps the bytes received in the ``.part`` file: the same mirror is
asked for the rest with an HTTP ``Range`` request at once (while each attempt makes
progress), and a later call resumes the file the same way. A server that ignores the range
sends the whole file again, which then replaces the partial one. A ``.part`` is locked while a
process writes it; a second process downloading the same file at the same time uses a
temporary file of its own instead. Content that fails the check is deleted, never resumed.
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


# Attempts at one mirror while each makes progress (a cut connection resumed each time).
RESUME_ATTEMPTS = 5


def _range_start(response):
    """First byte of a 206 response's ``Content-Range: bytes START-END/TOTAL``, or None."""
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    start = rest.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _fetch_into(url, f, timeout):
    """Append the rest of ``url`` to the open file ``f``, resuming at its size when the
    server honours a range; raise IncompleteDownload if the body is cut short."""
    offset = f.seek(0, os.SEEK_END)
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The partial file is as long as the whole or longer: not a prefix of it.
            f.seek(0)
            f.truncate()
            return _fetch_into(url, f, timeout)
        raise
    with response:
        if offset and not (response.status == 206 and _range_start(response) == offset):
            f.seek(0)       # the server sends the whole file: start over
            f.truncate()
            offset = 0
        expected = response.headers.get("Content-Length")
        total = None if expected is None else offset + int(expected)
        received = 0
        try:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
        except http.client.IncompleteRead as exc:
            f.write(exc.partial)
            received += len(exc.partial)
            f.flush()
            raise IncompleteDownload(f"connection closed after {offset + received} of "
                                     f"{total} bytes") from None
        f.flush()
    # Some short bodies end without IncompleteRead (read() just returns b""); comparing with
    # Content-Length keeps those partial files from reaching the content check.
    if total is not None and offset + received != total:
        raise IncompleteDownload(f"connection closed after {offset + received} of {total} "
                                 f"bytes")


def _open_part(folder, name):
    """(file, path, resumable): the locked ``.NAME.part``, or a private temporary file
    when another process holds that lock (or the system has no ``fcntl``)."""
    path = folder / f".{name}.part"
    f = open(path, "a+b")
    try:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return f, path, True
    except (ImportError, OSError):
        f.close()
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    return os.fdopen(fd, "w+b"), type(folder)(tmp), False


def _size(f):
    return f.seek(0, os.SEEK_END)


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
    f, path, resumable = _open_part(folder, name)
    done = False
    try:
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            tries, restarted = 0, False
            while True:
                tries += 1
                before = _size(f)
                try:
                    log.info("downloading %s%s", url, f" from byte {before}" if before else "")
                    _fetch_into(url, f, timeout)
                except IncompleteDownload as exc:
                    if _size(f) > before and tries < RESUME_ATTEMPTS:
                        continue
                    attempts.append((url, _describe(exc)))
                    break
                except Exception as exc:  # any failure of one mirror means: try the next one
                    attempts.append((url, _describe(exc)))
                    break
                try:
                    result = check(os.fspath(path))
                except Exception as exc:
                    f.seek(0)
                    f.truncate()
                    if before and not restarted:
                        # The resumed bytes may have come from another mirror's copy.
                        restarted = True
                        continue
                    attempts.append((url, _describe(exc)))
                    break
                f.close()
                os.replace(path, folder / name)
                done = True
                return result, attempts, True
            log.info("%s failed: %s", url, attempts[-1][1])
        return None, attempts, False
    finally:
        # Also runs on KeyboardInterrupt: a resumable .part keeps what it has for the next
        # call; a private temporary file, or an empty .part, is removed.
        if not done:
            keep = resumable and not f.closed and _size(f) > 0
            f.close()
            if not keep and os.path.exists(path):
                os.unlink(path)
