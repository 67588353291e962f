"""Downloading a named set from a local HTTP server on 127.0.0.1: it works, resumes a cut
download with a Range request (at once and on a later call), and refuses a wrong checksum.

The files are generated Fashion-MNIST-style IDX files; the set's pins are replaced by their
sha256 for the test (the real pins cannot be checked without the internet).
"""
import dataclasses
import gzip
import hashlib
import http.server
import re
import threading

import numpy as np
import pytest

from fastconv.datasets import FILES, NAMED_SETS, DataNotFoundError, cache_dir, load_dataset
from fastconv.datasets._idx import idx_bytes

from .dataset_files import TRAIN_IMAGES, idx_arrays
from .test_cli_errors import assert_one_line_error, run_cli


def _files(seed):
    arrays = idx_arrays(np.random.default_rng(seed))
    return {name: gzip.compress(idx_bytes(a), mtime=0) for name, a in zip(FILES, arrays)}


GOOD = _files(1)
OTHER = _files(2)       # a valid set, but not the pinned one


class _Handler(http.server.BaseHTTPRequestHandler):
    """Mirror behaviours by path prefix: /good/ whole files, /range/ whole files and byte
    ranges, /cutonce/ the first request of a file cut halfway and ranges honoured after,
    /cutalways/ every response cut halfway and ranges ignored, /other/ another set's files,
    /othercut/ those cut halfway."""

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        self.server.requests.append((kind, name, self.headers.get("Range")))
        files = OTHER if kind.startswith("other") else GOOD
        if name not in files:
            self.send_error(404)
            return
        body = files[name]
        first = sum(1 for k, n, _ in self.server.requests if (k, n) == (kind, name)) == 1
        cut = kind in ("cutalways", "othercut") or (kind == "cutonce" and first)
        found = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if found and kind in ("range", "cutonce") and not cut:
            start = int(found.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def pinned(tmp_path, monkeypatch):
    """A private cache, offline unless a test says otherwise, and Fashion-MNIST's pins
    replaced by those of the generated files."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FASTCONV_OFFLINE", "1")
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    pins = {name: hashlib.sha256(data).hexdigest() for name, data in GOOD.items()}
    monkeypatch.setitem(NAMED_SETS, "fashion-mnist",
                        dataclasses.replace(NAMED_SETS["fashion-mnist"], sha256=pins))
    return cache_dir("fashion-mnist")


def _load(*mirrors, offline=False):
    return load_dataset("fashion-mnist", mirrors=list(mirrors), offline=offline)


def test_named_set_downloads_into_its_own_cache(server, pinned):
    httpd, base = server
    data = _load(f"{base}/good/")
    assert [(k, n) for k, n, _ in httpd.requests] == [("good", n) for n in FILES]
    assert sorted(p.name for p in pinned.iterdir()) == sorted(FILES)
    assert pinned == cache_dir("fashion-mnist") != cache_dir("mnist")
    for name in FILES:
        assert (pinned / name).read_bytes() == GOOD[name]
    assert (data.name, data.n_classes, data.input_shape) == ("fashion-mnist", 10, (1, 32, 32))
    again = _load(f"{base}/good/", offline=True)       # from the cache, no request
    assert len(httpd.requests) == 4
    np.testing.assert_array_equal(again.train_x, data.train_x)


def test_cut_download_resumes_with_a_range_request(server, pinned):
    httpd, base = server
    _load(f"{base}/cutonce/")
    half = len(GOOD[TRAIN_IMAGES]) // 2
    assert httpd.requests[:2] == [("cutonce", TRAIN_IMAGES, None),
                                  ("cutonce", TRAIN_IMAGES, f"bytes={half}-")]
    assert sorted(p.name for p in pinned.iterdir()) == sorted(FILES)
    assert all((pinned / name).read_bytes() == GOOD[name] for name in FILES)


def test_a_later_call_resumes_the_partial_file(server, pinned):
    httpd, base = server
    with pytest.raises(DataNotFoundError, match="IncompleteDownload: connection closed after"):
        _load(f"{base}/cutalways/")
    half = len(GOOD[TRAIN_IMAGES]) // 2
    part = pinned / f".{TRAIN_IMAGES}.part"
    assert [p.name for p in pinned.iterdir()] == [part.name]
    assert part.read_bytes() == GOOD[TRAIN_IMAGES][:half]
    del httpd.requests[:]
    _load(f"{base}/range/")
    assert httpd.requests[0] == ("range", TRAIN_IMAGES, f"bytes={half}-")
    assert sorted(p.name for p in pinned.iterdir()) == sorted(FILES)
    assert (pinned / TRAIN_IMAGES).read_bytes() == GOOD[TRAIN_IMAGES]


def test_resumed_bytes_of_another_copy_are_discarded_and_fetched_again(server, pinned):
    httpd, base = server
    with pytest.raises(DataNotFoundError):
        _load(f"{base}/othercut/")
    del httpd.requests[:]
    _load(f"{base}/range/")
    half = len(OTHER[TRAIN_IMAGES]) // 2
    # The resumed file fails its pin; it is started over from the first byte, once.
    assert httpd.requests[:2] == [("range", TRAIN_IMAGES, f"bytes={half}-"),
                                  ("range", TRAIN_IMAGES, None)]
    assert (pinned / TRAIN_IMAGES).read_bytes() == GOOD[TRAIN_IMAGES]


def test_wrong_checksum_is_refused_and_nothing_is_cached(server, pinned):
    httpd, base = server
    with pytest.raises(DataNotFoundError) as info:
        _load(f"{base}/other/")
    msg = str(info.value)
    assert f"{base}/other/{TRAIN_IMAGES}: sha256 mismatch for {TRAIN_IMAGES} (as published)" \
        in msg
    assert msg.startswith("cannot load Fashion-MNIST: no valid copy of")
    assert list(pinned.iterdir()) == []
    # A good mirror after the bad one is used.
    data = _load(f"{base}/other/", f"{base}/good/")
    assert data.train_x.shape == (60, 1, 32, 32)


def test_named_sets_pin_every_file():
    for name, named in NAMED_SETS.items():
        assert named.name == name and named.mirrors
        assert sorted(named.sha256) == sorted(FILES)
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in named.sha256.values())
        assert named.hashed == ("uncompressed" if name == "mnist" else "file")


def test_cli_names_the_set_when_it_cannot_be_found(tmp_path):
    env = {"FASTCONV_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path)}
    status, _, err = run_cli("train", "--dataset", "kmnist", "--save", tmp_path / "run",
                             cwd=tmp_path, env=env)
    assert_one_line_error(status, err, 1, "cannot load Kuzushiji-MNIST",
                          "pass --data FOLDER (--debug")
