"""Data sets beyond MNIST: an IDX folder in the MNIST layout, CIFAR-10 binary batches and an
.npz of arrays, each generated small here.

Each kind trains through the API and through ``fastconv train`` (one epoch), is saved, tested
and predicted; the model is sized to the data (channels, image size, classes). Twenty-odd
malformed files per reader each give one DataFileError naming the file and the problem.
"""
import gzip
import io
import os
import zipfile

import numpy as np
import pytest

from fastconv import nn
from fastconv.datasets import (DataFileError, Dataset, Normalization, load_cifar10,
                               load_dataset, load_idx_folder, load_npz, write_idx)
from fastconv.datasets.cifar import MAX_BATCH_BYTES
from fastconv.serialization import load_model, save_model
from fastconv.train import homework_trainer

from .dataset_files import (RECORD, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
                            cifar_records, idx_arrays, write_cifar_folder, write_idx_folder,
                            write_npz)
from .test_cli_errors import assert_one_line_error, run_cli


@pytest.fixture
def gen():
    return np.random.default_rng(2024)


def make_set(kind, tmp_path, gen):
    if kind == "idx":
        return write_idx_folder(tmp_path / "fashion", gen)
    if kind == "cifar":
        return write_cifar_folder(tmp_path / "cifar", gen)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_npz(tmp_path / "arrays.npz", gen)


# kind: (model, input shape, classes, train / test samples)
KINDS = {"idx": ("convnet", (1, 32, 32), 10, 60, 20),
         "cifar": ("convnet-max", (3, 32, 32), 10, 40, 10),
         "npz": ("mlp", (2, 10, 10), 3, 36, 9)}


# --- what the loaders give -----------------------------------------------------------------

def test_idx_folder_pads_and_normalizes_with_its_training_split(tmp_path, gen):
    folder = write_idx_folder(tmp_path / "f", gen, compress=False)
    train_x, train_y, test_x, test_y = idx_arrays(np.random.default_rng(2024))
    data = load_idx_folder(folder, dtype=np.float64)
    padded = np.zeros((60, 32, 32))
    padded[:, 2:30, 2:30] = train_x
    assert data.normalization.mean == pytest.approx(padded.mean(), rel=1e-12)
    assert data.normalization.std == pytest.approx(padded.std(ddof=1), rel=1e-12)
    np.testing.assert_allclose(data.test_x[:, 0, 2:30, 2:30],
                               (test_x - padded.mean()) / padded.std(ddof=1), rtol=1e-12)
    np.testing.assert_array_equal(data.train_y, train_y)
    assert (data.name, data.n_classes, data.input_shape) == ("idx", 10, (1, 32, 32))
    assert data.files[TRAIN_IMAGES] == str(folder / TRAIN_IMAGES[:-3])


def test_cifar_records_are_nchw_and_batches_concatenate(tmp_path, gen):
    folder = write_cifar_folder(tmp_path / "c", gen)
    raw = np.frombuffer(b"".join((folder / f"data_batch_{i}.bin").read_bytes()
                                 for i in range(1, 6)), np.uint8).reshape(-1, RECORD)
    data = load_cifar10(folder, normalize=False, dtype=np.float64)
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal(data.train_y, raw[:, 0])
    # Record layout: 1,024 red values row by row, then green, then blue.
    np.testing.assert_array_equal(data.train_x[7, 1, 3, 5], raw[7, 1 + 1024 + 3 * 32 + 5])
    fitted = load_cifar10(folder)
    assert fitted.normalization.mean == pytest.approx(raw[:, 1:].mean(), rel=1e-12)
    assert fitted.normalization.std == pytest.approx(raw[:, 1:].std(ddof=1), rel=1e-12)
    # The tarball's own folder name is found inside the folder given.
    assert load_cifar10(tmp_path / "c").files == data.files
    (tmp_path / "t").mkdir()
    os.rename(folder, tmp_path / "t" / "cifar-10-batches-bin")
    assert load_cifar10(tmp_path / "t").train_x.shape == (40, 3, 32, 32)


def test_npz_classes_and_shape_come_from_the_data(tmp_path, gen):
    path = write_npz(tmp_path / "a.npz", gen)
    with np.load(path) as f:
        x = f["x"].astype(np.float64)
    data = load_npz(path)
    assert (data.n_classes, data.input_shape, data.name) == (3, (2, 10, 10), "npz")
    assert data.normalization.mean == pytest.approx(x.mean(), rel=1e-9)
    assert data.normalization.std == pytest.approx(x.std(ddof=1), rel=1e-9)
    np.savez(tmp_path / "b.npz", x=np.zeros((4, 5, 6), np.uint8) + np.arange(4)[:, None, None],
             y=np.array([0, 1, 1, 0]))
    only_train = load_npz(tmp_path / "b.npz", normalize=False)
    assert only_train.train_x.shape == (4, 1, 5, 6) and only_train.test_x.shape == (0, 1, 5, 6)
    with pytest.raises(ValueError, match="size 'small' needs a test split"):
        load_npz(tmp_path / "b.npz", size="small")
    assert load_npz(path, size=(6, 2)).train_x.shape == (6, 2, 10, 10)


def test_load_dataset_dispatches_and_checks_its_arguments(tmp_path, gen):
    folder = write_idx_folder(tmp_path / "f", gen)
    assert isinstance(load_dataset("idx", folder), Dataset)
    with pytest.raises(ValueError, match="unknown data set 'cifar100'"):
        load_dataset("cifar100", folder)
    with pytest.raises(ValueError, match="'npz' needs data: an .npz file"):
        load_dataset("npz")
    with pytest.raises(ValueError, match="local_contrast applies to the MNIST-layout sets"):
        load_dataset("cifar", write_cifar_folder(tmp_path / "c", gen), local_contrast=True)


# --- each kind trains, saves, tests and predicts -----------------------------------------

@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_trains_saves_and_predicts_through_the_api(kind, tmp_path, gen):
    model_name, shape, n_classes, n_train, n_test = KINDS[kind]
    data = load_dataset(kind, make_set(kind, tmp_path, gen))
    assert (data.input_shape, data.n_classes) == (shape, n_classes)
    assert (len(data.train_y), len(data.test_y)) == (n_train, n_test)
    model = nn.build_model(model_name, input_shape=data.input_shape, n_classes=data.n_classes)
    trainer = homework_trainer(model, batch_size=4, lr=0.05, progress=False, verbose=False)
    history = trainer.fit(data.train_x, data.train_y, data.test_x, data.test_y, epochs=1)
    assert np.isfinite(history[-1]["loss"])
    path = tmp_path / "model.npz"
    save_model(path, model, data.metadata())
    loaded, meta = load_model(path, input_shape=data.input_shape, n_outputs=n_classes)
    again = load_dataset(kind, make_set(kind, tmp_path / "again", np.random.default_rng(2024)),
                         normalize=Normalization.from_dict(meta["normalization"]))
    np.testing.assert_array_equal(again.test_x, data.test_x)
    np.testing.assert_array_equal(trainer.predict(data.test_x),
                                  np.argmax(loaded.forward(again.test_x), axis=1))
    assert meta["dataset"] == {"name": kind, "input_shape": list(shape),
                               "n_classes": n_classes, "padding": 2 if kind == "idx" else 0}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_trains_tests_and_predicts_through_the_cli(kind, tmp_path, gen):
    model_name, shape, n_classes, n_train, n_test = KINDS[kind]
    data = make_set(kind, tmp_path, gen)
    save = tmp_path / "run"
    status, out, err = run_cli("train", "--dataset", kind, "--data", data, "--model",
                               model_name, "--epochs", 1, "--batch-size", 4, "--save", save,
                               "--progress", "off", "--threads", 1, cwd=tmp_path)
    assert status == 0, err
    assert f"(N, {n_classes})" in out or f", {n_classes})" in out    # the summary's last row
    model, meta = load_model(save / "model.npz")
    assert meta["dataset"]["input_shape"] == list(shape)
    # test and predict follow the data set the model was trained on.
    status, out, err = run_cli("test", "--data", data, "--model-file", save / "model.npz",
                               "--threads", 1, cwd=tmp_path)
    assert status == 0, err
    assert "test accuracy:" in out
    status, out, err = run_cli("predict", "--dataset", kind, "--data", data, "--model-file",
                               save / "model.npz", "--output", tmp_path / "p.csv",
                               "--threads", 1, cwd=tmp_path)
    assert status == 0, err
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "Id,Prediction" and len(rows) == n_test + 1
    assert all(0 <= int(r.split(",")[1]) < n_classes for r in rows[1:])


@pytest.mark.slow
def test_cli_refuses_another_data_set_for_a_model_in_one_line(tmp_path, gen):
    npz = write_npz(tmp_path / "a.npz", gen)
    save = tmp_path / "run"
    status, _, err = run_cli("train", "--dataset", "npz", "--data", npz, "--model", "linear",
                             "--epochs", 1, "--batch-size", 9, "--save", save, "--progress",
                             "off", "--threads", 1, cwd=tmp_path)
    assert status == 0, err
    cifar = write_cifar_folder(tmp_path / "c", gen)
    status, _, err = run_cli("test", "--dataset", "cifar", "--data", cifar, "--model-file",
                             save / "model.npz", cwd=tmp_path)
    assert_one_line_error(status, err, 1, "trained on --dataset npz (inputs (2, 10, 10), 3 "
                                          "classes)", "Pass the --dataset and --data")
    status, _, err = run_cli("train", "--dataset", "npz", "--data", npz, "--model",
                             "convnet", "--save", tmp_path / "r2", cwd=tmp_path)
    assert_one_line_error(status, err, 1, "--model convnet does not fit --dataset npz",
                          "at least 16x16")
    status, _, err = run_cli("train", "--dataset", "cifar", "--save", tmp_path / "r3",
                             cwd=tmp_path)
    assert_one_line_error(status, err, 1, "--dataset cifar needs --data")


# --- malformed files: one clear error each -------------------------------------------------

def _gz(data):
    return gzip.compress(data, mtime=0)


def _idx_header(code, shape):
    return bytes([0, 0, code, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)


def _put(folder, name, data):
    (folder / name).write_bytes(data)


def _rewrite(folder, name, fn):
    """Replace ``name`` with ``fn(array)`` written as a valid IDX .gz."""
    from fastconv.datasets import read_idx
    write_idx(folder / name, fn(read_idx(folder / name)))


IDX_CASES = {
    "missing file": (TRAIN_IMAGES, lambda f: os.remove(f / TRAIN_IMAGES), "no such file"),
    "truncated gzip": (TEST_IMAGES, lambda f: _put(f, TEST_IMAGES, (f / TEST_IMAGES)
                                                   .read_bytes()[:300]), "truncated gzip file"),
    "corrupt gzip": (TRAIN_LABELS, lambda f: _put(f, TRAIN_LABELS, (lambda b: b[:12] + bytes(
        x ^ 0xFF for x in b[12:-8]) + b[-8:])((f / TRAIN_LABELS).read_bytes())),
        "corrupt gzip file"),
    "html page": (TRAIN_IMAGES, lambda f: _put(f, TRAIN_IMAGES, b"<html>Sign in</html>"),
                  "not a gzip file"),
    "truncated body": (TEST_IMAGES, lambda f: _put(f, TEST_IMAGES, _gz(_idx_header(
        8, (20, 28, 28)) + bytes(100))), "truncated: header shape (20, 28, 28)"),
    "trailing bytes": (TEST_LABELS, lambda f: _put(f, TEST_LABELS, _gz(_idx_header(
        8, (20,)) + bytes(21))), "trailing bytes"),
    "labels as images": (TRAIN_IMAGES, lambda f: _put(f, TRAIN_IMAGES, (f / TRAIN_LABELS)
                                                      .read_bytes()),
                         "expected 0x00000803 (uint8 images, 3-D), got 0x00000801"),
    "not IDX at all": (TEST_IMAGES, lambda f: _put(f, TEST_IMAGES, _gz(b"PNG\x00" * 8)),
                       "wrong magic number for t10k-images"),
    "int16 images": (TRAIN_IMAGES, lambda f: _rewrite(f, TRAIN_IMAGES,
                                                      lambda a: a.astype(np.int16)),
                     "got 0x00000B03 (int16, 3-D)"),
    "float32 labels": (TRAIN_LABELS, lambda f: _rewrite(f, TRAIN_LABELS,
                                                        lambda a: a.astype(np.float32)),
                       "got 0x00000D01 (float32, 1-D)"),
    "2-D images": (TEST_IMAGES, lambda f: _rewrite(f, TEST_IMAGES,
                                                   lambda a: a.reshape(len(a), -1)),
                   "got 0x00000802 (uint8, 2-D)"),
    "gzip bomb": (TRAIN_IMAGES, lambda f: _put(f, TRAIN_IMAGES, _gz(_idx_header(
        8, (4_000_000, 1000, 1000)) + bytes(1000))), "more than the 1073741824-byte limit"),
    "label count": (TEST_LABELS, lambda f: _rewrite(f, TEST_LABELS, lambda a: a[:-1]),
                    "19 labels for 20 images"),
    "image sizes differ": (TEST_IMAGES, lambda f: _rewrite(f, TEST_IMAGES,
                                                           lambda a: a[:, :27, :27]),
                           "both splits must have one size"),
    "empty file": (TRAIN_LABELS, lambda f: _put(f, TRAIN_LABELS, b""), "not a gzip file"),
    "cut header": (TRAIN_IMAGES, lambda f: _put(f, TRAIN_IMAGES, _gz(bytes([0, 0, 8, 3, 0]))),
                   "truncated IDX header"),
    "no images": (TEST_IMAGES, lambda f: (_rewrite(f, TEST_IMAGES, lambda a: a[:0]),
                                          _rewrite(f, TEST_LABELS, lambda a: a[:0])),
                  "holds no images"),
    "one class": (TRAIN_LABELS, lambda f: _rewrite(f, TRAIN_LABELS, lambda a: a * 0),
                  "at least 2 classes"),
    "unknown test class": (TEST_LABELS, lambda f: _rewrite(f, TEST_LABELS, lambda a: a + 200),
                           "is not a class of the training split"),
    "folder in place of a file": (TRAIN_IMAGES, lambda f: (os.remove(f / TRAIN_IMAGES),
                                                           os.mkdir(f / TRAIN_IMAGES)),
                                  "is not a regular file"),
    "huge label": (TRAIN_LABELS, lambda f: _rewrite(f, TRAIN_LABELS,
                                                    lambda a: a.astype(np.int32) + 50_000),
                   "got 0x00000C01 (int32, 1-D)"),
}


@pytest.mark.parametrize("case", sorted(IDX_CASES))
def test_malformed_idx_folder_gives_one_clear_error(case, tmp_path, gen):
    name, breaks, problem = IDX_CASES[case]
    folder = write_idx_folder(tmp_path / "f", gen)
    breaks(folder)
    with pytest.raises(DataFileError) as info:
        load_idx_folder(folder)
    assert problem in str(info.value)
    assert info.value.path == str(folder / name) and "\n" not in str(info.value)


def _cifar_put(name, data):
    return lambda f: (f / name).write_bytes(data)


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def _gen_records(n, offset=0):
    return cifar_records(np.random.default_rng(5), n, offset)


CIFAR_CASES = {
    "missing batch": ("data_batch_3.bin", lambda f: os.remove(f / "data_batch_3.bin"),
                      "no such file"),
    "missing test batch": ("test_batch.bin", lambda f: os.remove(f / "test_batch.bin"),
                           "no such file"),
    "empty batch": ("data_batch_1.bin", _cifar_put("data_batch_1.bin", b""), "is empty"),
    "empty test batch": ("test_batch.bin", _cifar_put("test_batch.bin", b""), "is empty"),
    "cut last record": ("data_batch_2.bin", _cifar_put("data_batch_2.bin",
                                                       _gen_records(3)[:-100]),
                        "the last record has 2973 bytes"),
    "one extra byte": ("data_batch_4.bin", _cifar_put("data_batch_4.bin",
                                                      _gen_records(3) + b"\x00"),
                       "not a whole number of 3073-byte records"),
    "cut test batch": ("test_batch.bin", _cifar_put("test_batch.bin", _gen_records(2)[:5000]),
                       "not a whole number of 3073-byte records"),
    "label 10": ("data_batch_5.bin", _cifar_put("data_batch_5.bin",
                                                b"\x0a" + _gen_records(2)[1:]),
                 "record 0 has label 10"),
    "label 255 in test": ("test_batch.bin", _cifar_put(
        "test_batch.bin", _gen_records(1) + b"\xff" + _gen_records(1)[1:]),
        "record 1 has label 255"),
    "CIFAR-100 records": ("data_batch_1.bin", _cifar_put("data_batch_1.bin", bytes(3074 * 3)),
                          "not a whole number"),
    "records without labels": ("data_batch_2.bin", _cifar_put("data_batch_2.bin",
                                                              bytes(3072 * 2)),
                               "not a whole number"),
    "gzip batch": ("data_batch_3.bin", _cifar_put("data_batch_3.bin", _gz(_gen_records(2))),
                   "is gzip-compressed"),
    "html page": ("test_batch.bin", _cifar_put("test_batch.bin", b"<html>Not found</html>"),
                  "not a whole number"),
    "one byte": ("data_batch_4.bin", _cifar_put("data_batch_4.bin", b"\x01"),
                 "the last record has 1 bytes"),
    "folder in place of a batch": ("data_batch_1.bin", lambda f: (
        os.remove(f / "data_batch_1.bin"), os.mkdir(f / "data_batch_1.bin")),
        "is not a regular file"),
    "fifo in place of a batch": ("data_batch_2.bin", lambda f: (
        os.remove(f / "data_batch_2.bin"), os.mkfifo(f / "data_batch_2.bin")),
        "is not a regular file"),
    "dangling symlink": ("data_batch_5.bin", lambda f: (
        os.remove(f / "data_batch_5.bin"), os.symlink(f / "gone.bin", f / "data_batch_5.bin")),
        "no such file"),
    "huge sparse file": ("data_batch_3.bin", lambda f: _sparse(f / "data_batch_3.bin",
                                                                MAX_BATCH_BYTES + RECORD),
                         "-byte limit of a CIFAR-10 batch file"),
    "label 10 in the last record": ("test_batch.bin", _cifar_put(
        "test_batch.bin", _gen_records(4)[:-RECORD] + b"\x0a" + bytes(3072)),
        "record 3 has label 10"),
    "record with half its pixels": ("data_batch_5.bin", _cifar_put(
        "data_batch_5.bin", _gen_records(2)[:RECORD + 1 + 1536]), "the last record has 1537"),
}


@pytest.mark.parametrize("case", sorted(CIFAR_CASES))
def test_malformed_cifar_folder_gives_one_clear_error(case, tmp_path, gen):
    name, breaks, problem = CIFAR_CASES[case]
    folder = write_cifar_folder(tmp_path / "c", gen)
    breaks(folder)
    with pytest.raises(DataFileError) as info:
        load_cifar10(folder)
    assert problem in str(info.value)
    assert info.value.path == str(folder / name) and "\n" not in str(info.value)


def _savez(**arrays):
    def write(path):
        np.savez(path, **arrays)
    return write


def _zip_with(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npy_bomb(path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (100_000, 100_000, 100)})
    _zip_with(path, {"x.npy": header.getvalue() + bytes(64), "y.npy": _npy(np.arange(2))})


def _npy_cut(path):
    _zip_with(path, {"x.npy": _npy(np.zeros((10, 4, 4)))[:-50], "y.npy": _npy(np.arange(10))})


def _crc_flip(path):
    np.savez(path, x=np.arange(64, dtype=np.float64).reshape(4, 4, 4), y=np.arange(4) % 2)
    data = bytearray(open(path, "rb").read())
    data[200] ^= 0x01          # inside x's stored (uncompressed) data: the CRC catches it
    open(path, "wb").write(bytes(data))


def _cut_zip(path):
    np.savez(path, x=np.ones((8, 4, 4)), y=np.arange(8) % 2)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


_X = np.random.default_rng(3).standard_normal((6, 5, 5)).astype(np.float32)
_Y = np.arange(6) % 2

NPZ_CASES = {
    "missing file": (lambda p: None, "no such file"),
    "empty file": (lambda p: open(p, "wb").close(), "is empty"),
    "text file": (lambda p: open(p, "w").write("x,y\n1,2\n"), "not an .npz file"),
    "truncated zip": (_cut_zip, "truncated or corrupt .npz"),
    "CRC mismatch": (_crc_flip, "truncated or corrupt .npz"),
    "no y": (_savez(x=_X), "has no 'y' array"),
    "no x": (_savez(y=_Y), "has no 'x' array"),
    "extra entry": (_savez(x=_X, y=_Y, z=_Y), "has an entry 'z.npy'"),
    "object array": (_savez(x=np.array([None] * 6, dtype=object), y=_Y), "dtype object"),
    "float labels": (_savez(x=_X, y=_Y.astype(np.float32)), "y must be integer class labels"),
    "one-hot labels": (_savez(x=_X, y=np.eye(2, dtype=np.int64)[_Y]),
                       "y must be integer class labels, shape (N,)"),
    "count mismatch": (_savez(x=_X, y=_Y[:5]), "y has 5 labels for the 6 images of x"),
    "2-D x": (_savez(x=_X.reshape(6, -1), y=_Y), "x must be (N, H, W) or (N, C, H, W)"),
    "channels last": (_savez(x=np.zeros((6, 8, 8, 3), np.uint8), y=_Y),
                      "looks channels-last (N, H, W, C)"),
    "NaN pixel": (_savez(x=np.where(_X > 2.5, np.nan, _X), y=_Y), "NaN or infinite"),
    "bool images": (_savez(x=_X > 0, y=_Y), "images must be integers or floats"),
    "complex images": (_savez(x=_X.astype(np.complex64), y=_Y),
                       "images must be integers or floats"),
    "x_test without y_test": (_savez(x=_X, y=_Y, x_test=_X), "only one of x_test and y_test"),
    "test shape differs": (_savez(x=_X, y=_Y, x_test=_X[:, :4], y_test=_Y),
                           "both splits must have one shape"),
    "npy bomb": (_npy_bomb, "more than the 2147483648-byte limit"),
    "npy data cut": (_npy_cut, "x is truncated"),
    "negative label": (_savez(x=_X, y=_Y - 1), "labels must be 0 or more"),
    "label too large": (_savez(x=_X, y=_Y * 10**9), "K <= 10000"),
    "constant images": (_savez(x=np.ones((6, 5, 5)), y=_Y), "nothing to learn from"),
    "a folder": (lambda p: os.mkdir(p), "is a folder"),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_malformed_npz_gives_one_clear_error(case, tmp_path):
    writes, problem = NPZ_CASES[case]
    path = tmp_path / "data.npz"
    writes(path)
    with pytest.raises(DataFileError) as info:
        load_npz(path)
    assert problem in str(info.value)
    assert info.value.path == str(path) and "\n" not in str(info.value)


@pytest.mark.parametrize("kind, breaks, fragment", [
    ("idx", lambda d: _put(d, TRAIN_IMAGES, b"junk"), "not a gzip file"),
    ("cifar", lambda d: _put(d, "test_batch.bin", b"junk"), "whole number of 3073-byte"),
    ("npz", lambda p: open(p, "wb").write(b"junk"), "not an .npz file"),
])
def test_cli_reports_a_malformed_file_in_one_line(kind, breaks, fragment, tmp_path, gen):
    data = make_set(kind, tmp_path, gen)
    breaks(data)
    status, _, err = run_cli("train", "--dataset", kind, "--data", data, "--save",
                             tmp_path / "run", cwd=tmp_path)
    assert_one_line_error(status, err, 1, fragment, f"--dataset {kind}: --data must name")


@pytest.mark.parametrize("record", [{"name": "imagenet", "input_shape": [3, 32, 32],
                                     "n_classes": 10, "padding": 0},
                                    {"name": "npz"}, "cifar"])
def test_cli_refuses_a_model_file_with_a_malformed_data_set_record(record, tmp_path):
    path = tmp_path / "model.npz"
    save_model(path, nn.build_model("linear"), {"dataset": record})
    status, _, err = run_cli("test", "--model-file", path, cwd=tmp_path)
    assert_one_line_error(status, err, 1, "metadata.dataset must record name")


def test_cli_size_larger_than_a_small_set_is_one_line(tmp_path, gen):
    data = make_set("cifar", tmp_path, gen)
    status, _, err = run_cli("train", "--dataset", "cifar", "--data", data, "--size", "small",
                             "--save", tmp_path / "run", cwd=tmp_path)
    assert_one_line_error(status, err, 1, "--size small: load_cifar10: size 'small' asks for "
                                          "6000 train / 1000 test images; the files hold 40 / "
                                          "10; pass --size full")


def test_cli_predict_refuses_digit_images_for_a_cifar_model(tmp_path):
    path = tmp_path / "model.npz"
    save_model(path, nn.build_model("linear", input_shape=(3, 32, 32)),
               {"dataset": {"name": "cifar", "input_shape": [3, 32, 32], "n_classes": 10,
                            "padding": 0}})
    np.save(tmp_path / "digit.npy", np.eye(28) * 255)
    status, _, err = run_cli("predict", tmp_path / "digit.npy", "--model-file", path,
                             cwd=tmp_path)
    assert_one_line_error(status, err, 1, "IMAGE files are prepared as MNIST digits",
                          "takes (3, 32, 32) inputs from --dataset cifar",
                          "Run predict without IMAGE")


def test_classes_are_counted_on_the_whole_training_file(tmp_path, gen):
    folder = write_idx_folder(tmp_path / "f", gen)      # labels 0-9 in turn
    first = load_idx_folder(folder, size=(5, 5))
    assert set(first.train_y) == {0, 1, 2, 3, 4} and first.n_classes == 10
    npz = load_npz(write_npz(tmp_path / "a.npz", gen), size=(2, 2))
    assert set(npz.train_y) == {0, 1} and npz.n_classes == 3
