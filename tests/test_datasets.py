"""Tests of fastconv.datasets: IDX format, MNIST search order, downloads, checks, normalization.

Most tests use the small real-MNIST subset in fastconv/datasets/mnist_sample (see its README.md); the tests marked
by the ``mnist_dir`` fixture use the full files from FASTCONV_DATA and are skipped without it.
No test reaches the internet: downloads go to a local HTTP server, and every test runs with
FASTCONV_OFFLINE=1 unless it passes ``offline=False`` itself.
"""
import gzip
import hashlib
import http.server
import json
import re
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import fastconv.datasets as ds
from fastconv.datasets import (FILES, SAMPLE_FOLDER, DataFileError, DataNotFoundError,
                               Normalization, load_mnist, read_idx, write_idx)
from fastconv.datasets._idx import read_bytes

SUBSET = Path(SAMPLE_FOLDER)    # the MNIST sample shipped in the (installed) package
SUBSET_SHA256 = json.loads((SUBSET / "sha256.json").read_text())
TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FILES


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Private cache, no FASTCONV_DATA, offline unless a test says otherwise."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("FASTCONV_OFFLINE", "1")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path


@pytest.fixture
def cache(isolated):
    return isolated / "xdg" / "fastconv" / "mnist"


def copy_subset(dest, names=FILES):
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(SUBSET / name, dest / name)
    return dest


def load_subset(folder=SUBSET, **kwargs):
    kwargs.setdefault("expected_sha256", SUBSET_SHA256)
    return load_mnist(folder, **kwargs)


# --- IDX format -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, rng, dtype, suffix):
    x = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"x.idx{suffix}"
    write_idx(path, x)
    y = read_idx(path)
    assert y.dtype == np.dtype(dtype) and y.dtype.isnative
    np.testing.assert_array_equal(y, x)


def test_write_idx_is_deterministic_and_gzip_by_name(tmp_path):
    x = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", x)
    write_idx(tmp_path / "b.gz", x)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    raw = write_idx(tmp_path / "c", x)
    assert (tmp_path / "c").read_bytes() == raw == bytes([0, 0, 8, 1, 0, 0, 0, 10]) + x.tobytes()


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype uint16"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))


def raw_of(x):
    return bytes([0, 0, 8, x.ndim]) + b"".join(d.to_bytes(4, "big") for d in x.shape) \
        + x.tobytes()


@pytest.mark.parametrize("data, problem", [
    (b"\x00\x00", "too short for an IDX header"),
    (b"\x01\x00\x08\x01" + bytes(4), "bad magic number 0x01000801"),
    (b"\x00\x00\x07\x01" + bytes(4), "bad magic number 0x00000701"),
    (b"\x00\x00\x08\x03" + bytes(4), "truncated IDX header"),
    (raw_of(np.zeros((4, 3), np.uint8))[:-1], r"truncated: header shape \(4, 3\)"),
    (raw_of(np.zeros((4, 3), np.uint8)) + b"\x00", "trailing bytes"),
])
def test_read_idx_reports_format_problems(tmp_path, data, problem):
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(DataFileError, match=problem) as info:
        read_idx(path)
    assert info.value.path == str(path) and str(path) in str(info.value)


def test_read_idx_reports_gzip_problems(tmp_path):
    good = gzip.compress(raw_of(np.arange(200, dtype=np.uint8)), mtime=0)
    cases = {
        "truncated.gz": (good[:len(good) // 2], "truncated gzip file"),
        "corrupt.gz": (good[:12] + bytes(b ^ 0xFF for b in good[12:-8]) + good[-8:],
                       "corrupt gzip file"),
        "page.gz": (b"<html><body>Access Denied</body></html>", "not a gzip file.*HTML page"),
    }
    for name, (data, problem) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataFileError, match=problem) as info:
            read_idx(tmp_path / name)
        assert name in str(info.value)


# --- loading the subset: shapes, padding, normalization ------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_subset_shapes_padding_and_normalization(dtype):
    data = load_subset(dtype=dtype)
    raw_train, raw_test = read_idx(SUBSET / TRAIN_IMAGES), read_idx(SUBSET / TEST_IMAGES)
    assert data.train_x.shape == (1000, 1, 32, 32) and data.test_x.shape == (200, 1, 32, 32)
    assert data.train_x.dtype == dtype and data.test_x.dtype == dtype
    assert data.train_x.flags.c_contiguous and data.test_x.flags.c_contiguous
    assert data.train_y.dtype == np.int64 and data.test_y.dtype == np.int64
    np.testing.assert_array_equal(data.train_y, read_idx(SUBSET / TRAIN_LABELS))
    np.testing.assert_array_equal(data.test_y, read_idx(SUBSET / TEST_LABELS))

    padded = np.zeros((1000, 32, 32))
    padded[:, 2:30, 2:30] = raw_train
    mean, std = padded.mean(), padded.std(ddof=1)
    norm = data.normalization
    assert norm.mean == pytest.approx(mean, rel=1e-12)
    assert norm.std == pytest.approx(std, rel=1e-12)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(data.train_x[:, 0], (padded - mean) / std, rtol=tol, atol=tol)
    # The test set uses the training set's statistics, not its own.
    np.testing.assert_allclose(data.test_x[:, 0, 2:30, 2:30], (raw_test - mean) / std,
                               rtol=tol, atol=tol)
    for x in (data.train_x, data.test_x):
        border = np.ones((32, 32), bool)
        border[2:30, 2:30] = False
        np.testing.assert_array_equal(x[:, 0, border], np.asarray(-mean / std, dtype))
    assert data.train_x.mean(dtype=np.float64) == pytest.approx(0, abs=1e-6)
    assert data.train_x.std(dtype=np.float64) == pytest.approx(1, abs=1e-3)
    assert set(data.files.values()) == {str(SUBSET / name) for name in FILES}
    assert "(1000, 1, 32, 32) " + np.dtype(dtype).name in repr(data)


def test_normalize_false_gives_zero_padded_pixels():
    data = load_subset(normalize=False)
    assert data.normalization is None
    x = data.train_x[:, 0]
    np.testing.assert_array_equal(x[:, 2:30, 2:30], read_idx(SUBSET / TRAIN_IMAGES))
    x[:, 2:30, 2:30] = 0
    assert not x.any()
    assert data.test_x.max() == 255


def test_saved_normalization_is_applied_unchanged():
    saved = Normalization(10.0, 20.0)
    data = load_subset(normalize=saved, dtype=np.float64)
    assert data.normalization is saved
    np.testing.assert_allclose(data.test_x[:, 0, 2:30, 2:30],
                               (read_idx(SUBSET / TEST_IMAGES) - 10.0) / 20.0, rtol=1e-14)
    np.testing.assert_array_equal(data.test_x[:, 0, 0, :], -0.5)


def test_size_pair_takes_the_first_images_and_fits_on_them():
    data = load_subset(size=(100, 50), dtype=np.float64)
    assert data.train_x.shape == (100, 1, 32, 32) and data.test_y.shape == (50,)
    np.testing.assert_array_equal(data.train_y, read_idx(SUBSET / TRAIN_LABELS)[:100])
    padded = np.zeros((100, 32, 32))
    padded[:, 2:30, 2:30] = read_idx(SUBSET / TRAIN_IMAGES)[:100]
    assert data.normalization.mean == pytest.approx(padded.mean(), rel=1e-12)


@pytest.mark.parametrize("size, match", [
    ("small", r"asks for 6000 train / 1000 test images; the files hold 1000 / 200"),
    ((1001, 1), "asks for 1001 train"),
    ("tiny", "size must be 'full', 'small'"),
    (3, "size must be 'full', 'small'"),
    ((0, 5), "two positive integers"),
])
def test_bad_size_raises(size, match):
    with pytest.raises(ValueError, match=match):
        load_subset(size=size)


def test_argument_validation():
    with pytest.raises(TypeError, match="dtype must be float32 or float64; got int32"):
        load_subset(dtype=np.int32)
    with pytest.raises(TypeError, match="normalize must be a bool or a Normalization"):
        load_subset(normalize={"mean": 0, "std": 1})
    with pytest.raises(ValueError, match="expected_sha256 must give exactly the four files"):
        load_subset(expected_sha256={TRAIN_IMAGES: "0" * 64})


def test_normalization_round_trips_through_json():
    norm = Normalization(np.float32(25.5), 70.25)
    back = Normalization.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert back == norm and type(back.mean) is float
    np.testing.assert_allclose(norm.apply(np.array([25.5, 95.75])), [0.0, 1.0])
    assert norm.apply(np.array([0], np.uint8)).dtype == np.float64
    with pytest.raises(ValueError, match="exactly the keys 'mean' and 'std'"):
        Normalization.from_dict({"mean": 1.0})
    with pytest.raises(ValueError, match="std > 0"):
        Normalization(0.0, 0.0)
    with pytest.raises(ValueError, match="finite mean"):
        Normalization(float("nan"), 1.0)


# --- bad files ------------------------------------------------------------------------------

def rewrite(folder, name, array):
    """Replace ``name`` in ``folder`` with a valid IDX .gz of ``array``; return its sha256."""
    return hashlib.sha256(write_idx(folder / name, array)).hexdigest()


def test_truncated_gz_names_the_file(tmp_path):
    folder = copy_subset(tmp_path / "d")
    data = (folder / TEST_IMAGES).read_bytes()
    (folder / TEST_IMAGES).write_bytes(data[:len(data) // 2])
    with pytest.raises(DataFileError, match="truncated gzip file") as info:
        load_subset(folder)
    assert info.value.path == str(folder / TEST_IMAGES)


def test_wrong_magic_names_the_file(tmp_path):
    folder = copy_subset(tmp_path / "d")
    shutil.copy(folder / TRAIN_LABELS, folder / TRAIN_IMAGES)
    with pytest.raises(DataFileError, match=r"wrong magic number for train-images-idx3-ubyte"
                                            r"\.gz: expected 0x00000803 .*got 0x00000801"):
        load_subset(folder)


def test_wrong_dimensions_name_the_file(tmp_path):
    folder = copy_subset(tmp_path / "d")
    rewrite(folder, TEST_IMAGES, read_idx(folder / TEST_IMAGES)[:, :, :27])
    with pytest.raises(DataFileError, match=r"wrong dimensions .*expected \(N, 28, 28\), "
                                            r"got \(200, 28, 27\)") as info:
        load_subset(folder)
    assert info.value.path == str(folder / TEST_IMAGES)


def test_wrong_sha256_names_the_file(tmp_path):
    folder = copy_subset(tmp_path / "d")
    images = read_idx(folder / TRAIN_IMAGES).copy()
    images[0, 0, 0] ^= 1
    rewrite(folder, TRAIN_IMAGES, images)
    with pytest.raises(DataFileError, match=f"sha256 mismatch for {TRAIN_IMAGES}.*expected "
                                            f"{SUBSET_SHA256[TRAIN_IMAGES]}") as info:
        load_subset(folder)
    assert info.value.path == str(folder / TRAIN_IMAGES)


def test_canonical_hashes_are_the_default():
    canonical = ds.SHA256[TRAIN_IMAGES]
    with pytest.raises(DataFileError, match=f"sha256 mismatch .*expected {canonical}"):
        load_mnist(SUBSET)


def test_label_count_must_match_image_count(tmp_path):
    folder = copy_subset(tmp_path / "d")
    table = dict(SUBSET_SHA256)
    table[TEST_LABELS] = rewrite(folder, TEST_LABELS, read_idx(folder / TEST_LABELS)[:199])
    with pytest.raises(DataFileError, match="199 labels for 200 images") as info:
        load_subset(folder, expected_sha256=table)
    assert info.value.path == str(folder / TEST_LABELS)


def test_labels_outside_0_9_are_rejected(tmp_path):
    folder = copy_subset(tmp_path / "d")
    labels = read_idx(folder / TEST_LABELS).copy()
    labels[5] = 10
    table = dict(SUBSET_SHA256)
    table[TEST_LABELS] = rewrite(folder, TEST_LABELS, labels)
    with pytest.raises(DataFileError, match="labels must be 0-9; found 10"):
        load_subset(folder, expected_sha256=table)


# --- where the files are looked for ---------------------------------------------------------

def test_search_order_folder_then_env_then_cache(tmp_path, monkeypatch, cache):
    arg, env = tmp_path / "arg", tmp_path / "env"
    copy_subset(arg, [TRAIN_IMAGES])
    copy_subset(env, [TRAIN_IMAGES, TRAIN_LABELS])
    copy_subset(cache)
    monkeypatch.setenv("FASTCONV_DATA", str(env))
    data = load_subset(arg)
    assert data.files == {TRAIN_IMAGES: str(arg / TRAIN_IMAGES),
                          TRAIN_LABELS: str(env / TRAIN_LABELS),
                          TEST_IMAGES: str(cache / TEST_IMAGES),
                          TEST_LABELS: str(cache / TEST_LABELS)}
    assert load_subset(None).files[TRAIN_IMAGES] == str(env / TRAIN_IMAGES)


def test_cache_follows_xdg_and_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert ds.cache_dir() == tmp_path / "c" / "fastconv" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.cache_dir() == tmp_path / "home" / ".cache" / "fastconv" / "mnist"


def test_a_bad_local_file_is_not_skipped_for_a_good_one(tmp_path, monkeypatch):
    arg = copy_subset(tmp_path / "arg", [TEST_LABELS])
    (arg / TEST_LABELS).write_bytes(b"junk")
    monkeypatch.setenv("FASTCONV_DATA", str(SUBSET))
    with pytest.raises(DataFileError, match="not a gzip file"):
        load_subset(arg)


# --- downloads from a local server ----------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    """Mirror behaviours by path prefix: /forbidden/ 403, /html/ an HTML page with 200,
    /good/ the subset files, /cut/ the subset files cut off halfway."""

    def do_GET(self):
        self.server.requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "forbidden":
            self.send_error(403)
            return
        if kind == "html":
            body = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
        elif name in FILES:
            body = (SUBSET / name).read_bytes()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "cut":
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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd, base
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_moves_past_403_and_html_to_the_third_mirror(server, cache):
    httpd, base = server
    mirrors = [f"{base}/forbidden/", f"{base}/html", f"{base}/good/"]
    data = load_subset(None, mirrors=mirrors, offline=False)
    assert httpd.requests[:3] == [f"/forbidden/{TRAIN_IMAGES}", f"/html/{TRAIN_IMAGES}",
                                  f"/good/{TRAIN_IMAGES}"]
    assert len(httpd.requests) == 12
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (cache / name).read_bytes() == (SUBSET / name).read_bytes()
        assert data.files[name] == str(cache / name)
    np.testing.assert_array_equal(data.test_y, read_idx(SUBSET / TEST_LABELS))

    # The cache now serves offline, without a request.
    again = load_subset(None, mirrors=mirrors, offline=True)
    assert len(httpd.requests) == 12
    np.testing.assert_array_equal(again.train_x, data.train_x)


def test_every_mirror_failing_lists_each_url_and_reason(server, cache):
    httpd, base = server
    with pytest.raises(DataNotFoundError) as info:
        load_subset(None, mirrors=[f"{base}/forbidden/", f"{base}/html/"], offline=False)
    msg = str(info.value)
    assert f"{base}/forbidden/{TRAIN_IMAGES}: HTTP 403" in msg
    assert f"{base}/html/{TRAIN_IMAGES}: not a gzip file" in msg
    assert f"Put the four files {', '.join(FILES)}" in msg and f"in {cache}," in msg
    # The first file failing everywhere stops the search: no timeouts for the other three.
    assert len(httpd.requests) == 2
    assert not any(cache.iterdir())


def test_interrupted_download_leaves_no_file(server, cache):
    httpd, base = server
    with pytest.raises(DataNotFoundError, match=f"{base}/cut/{TRAIN_IMAGES}: IncompleteDownload: "
                                                  f"connection closed after 80864 of 161728"):
        load_subset(None, mirrors=[f"{base}/cut/"], offline=False)
    # Only the hidden partial file, kept for a later call to resume; nothing under a name
    # the loader reads.
    assert [p.name for p in cache.iterdir()] == [f".{TRAIN_IMAGES}.part"]

    data = load_subset(None, mirrors=[f"{base}/cut/", f"{base}/good/"], offline=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)
    assert data.train_x.shape == (1000, 1, 32, 32)


def test_offline_with_nothing_local_lists_places_and_opens_no_socket(server, monkeypatch,
                                                                      tmp_path, cache):
    httpd, base = server

    def no_socket(*args, **kwargs):
        raise AssertionError("a socket was opened while offline")

    monkeypatch.setattr(socket, "socket", no_socket)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    monkeypatch.setenv("FASTCONV_OFFLINE", "1")
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as info:
        load_subset(tmp_path / "empty", mirrors=[f"{base}/good/"])
    msg = str(info.value)
    for name in FILES:
        assert f"  {name}:\n    folder argument {tmp_path / 'empty'}: no such folder\n" \
               f"    FASTCONV_DATA={tmp_path / 'nowhere'}: no such folder\n" \
               f"    cache {cache}: no such folder\n" \
               f"    download: skipped: offline" in msg
    assert f"Put the four files {', '.join(FILES)}" in msg and f"in {cache}," in msg
    assert httpd.requests == []
    assert not cache.exists()


def test_offline_lists_unset_places():
    with pytest.raises(DataNotFoundError, match="folder argument: not given\n    FASTCONV_DATA: "
                                                "not set\n    cache .*: no such folder"):
        load_subset(None)


# --- local contrast normalization -----------------------------------------------------------

def test_local_contrast_applies_the_kernel_to_both_sets(monkeypatch):
    from fastconv.functional import (gaussian_kernel_1d,
                                     spatial_contrastive_normalization_forward)
    # Small blocks, one of them partial, so the blockwise loop is exercised.
    monkeypatch.setattr(ds.mnist, "_LCN_BLOCK", 10)
    plain = load_subset(size=(64, 32), dtype=np.float64)
    local = load_subset(size=(64, 32), dtype=np.float64, local_contrast=True)
    assert local.normalization == plain.normalization
    kernel = gaussian_kernel_1d(7)
    for got, x in ((local.train_x, plain.train_x), (local.test_x, plain.test_x)):
        want = spatial_contrastive_normalization_forward(x, kernel, threshold=1.0)
        assert got.shape == x.shape and got.dtype == x.dtype
        assert np.isfinite(got).all() and not np.allclose(got, x)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- the real files (FASTCONV_DATA) ---------------------------------------------------------

def readme_label_counts(folder):
    text = " ".join((Path(folder) / "README.md").read_text().split())
    found = re.search(r"Label counts: train ([\d ]+), test ([\d ]+)", text)
    assert found, "the MNIST README's 'Label counts' line was not found"
    return [np.array(g.split(), dtype=np.int64) for g in found.groups()]


@pytest.fixture(scope="module")
def full_mnist(mnist_dir):
    return load_mnist(mnist_dir, size="full", offline=True)


def test_full_mnist_loads_with_canonical_counts(full_mnist, mnist_dir):
    data = full_mnist
    assert data.train_x.shape == (60000, 1, 32, 32) and data.test_x.shape == (10000, 1, 32, 32)
    assert data.train_x.dtype == np.float32 and data.train_y.dtype == np.int64
    train_counts, test_counts = readme_label_counts(mnist_dir)
    np.testing.assert_array_equal(np.bincount(data.train_y, minlength=10), train_counts)
    np.testing.assert_array_equal(np.bincount(data.test_y, minlength=10), test_counts)
    norm = data.normalization
    pad = np.float32(-norm.mean / norm.std)
    for x in (data.train_x, data.test_x):
        assert (x[:, :, :2] == pad).all() and (x[:, :, 30:] == pad).all()
        assert (x[:, :, :, :2] == pad).all() and (x[:, :, :, 30:] == pad).all()
    assert data.train_x.mean(dtype=np.float64) == pytest.approx(0, abs=1e-5)
    assert data.train_x.std(dtype=np.float64) == pytest.approx(1, abs=1e-5)
    assert 20 < norm.mean < 30 and 60 < norm.std < 80


def test_small_is_the_first_6000_and_1000(full_mnist, mnist_dir, monkeypatch):
    monkeypatch.setenv("FASTCONV_DATA", mnist_dir)
    small = load_mnist(size="small", normalize=False)
    assert small.train_x.shape == (6000, 1, 32, 32) and small.test_x.shape == (1000, 1, 32, 32)
    np.testing.assert_array_equal(small.train_y, full_mnist.train_y[:6000])
    np.testing.assert_array_equal(small.test_y, full_mnist.test_y[:1000])
    norm = full_mnist.normalization
    np.testing.assert_allclose(small.test_x, full_mnist.test_x[:1000] * norm.std + norm.mean,
                               atol=1e-3)
    assert not small.train_x[:, :, :2].any()
    assert small.files[TRAIN_IMAGES] == str(Path(mnist_dir) / TRAIN_IMAGES)


def test_subset_is_reproducible_from_the_real_files(mnist_dir, tmp_path):
    from .make_test_data import cut
    table = cut(mnist_dir, tmp_path)
    assert table == SUBSET_SHA256
    for name in FILES:
        assert read_bytes(tmp_path / name) == read_bytes(SUBSET / name)
    assert (tmp_path / "README.md").read_text() \
        .split("| --- |")[0] == (SUBSET / "README.md").read_text().split("| --- |")[0]
