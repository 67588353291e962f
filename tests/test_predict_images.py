"""Predict your own digits: PNG files of any size and polarity, and .npy arrays, prepared as
MNIST was and normalized with the statistics stored in the model.

The digits are the committed MNIST test subset, rendered as PNG at other sizes (bicubic) and,
for half of them, inverted to dark-on-light; a ConvNet trained for a few seconds on the
committed training subset must label them about as well as the original test inputs.
"""
import csv
import io
import json
import os

import numpy as np
import pytest

from fastconv import nn

from fastconv.train import homework_trainer
from fastconv.datasets import load_mnist, read_idx
from fastconv.datasets.images import ImageError, prepare_digits, read_digit_images, to_mnist_28
from fastconv.serialization import save_model

from .test_cli_errors import assert_one_line_error, run_cli

from fastconv.datasets import SAMPLE_FOLDER  # noqa: E402

DATA = SAMPLE_FOLDER       # the MNIST sample shipped in the (installed) package
SIZES = (56, 100, 19)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with open(os.path.join(DATA, "sha256.json")) as f:
        sha = json.load(f)
    data = load_mnist(DATA, expected_sha256=sha, offline=True)
    model = nn.build_model("convnet-max", seed=1)
    homework_trainer(model, lr=0.05, batch_size=10, seed=1, progress=False,
            verbose=False).fit(data.train_x, data.train_y, epochs=3)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    save_model(path, model, {"normalization": data.normalization.to_dict(), "loss": "nll"})
    raw = read_idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))
    return path, model.eval(), data, raw


def _render(raw, folder):
    """Save each 28x28 MNIST digit as a PNG of another size, every other one inverted."""
    from PIL import Image

    paths = []
    for i, digit in enumerate(raw):
        size = SIZES[i % len(SIZES)]
        img = Image.fromarray(digit).resize((size, size), Image.BICUBIC)
        if i % 2:
            img = Image.fromarray(255 - np.asarray(img))
        path = folder / f"digit{i:03d}.png"
        img.save(path)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_cli_labels_rendered_test_digits_like_the_originals(trained, tmp_path):
    model_path, model, data, raw = trained
    paths = _render(raw, tmp_path)
    status, out, err = run_cli("predict", "--model-file", model_path, *paths, cwd=tmp_path)
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    labels = np.array([int(r["label"]) for r in rows])
    probs = np.array([[float(r[f"p{k}"]) for k in range(10)] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-3)
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    original = np.argmax(model.forward(data.test_x), axis=1)
    base_accuracy = np.mean(original == data.test_y)
    assert base_accuracy > 0.9
    assert np.mean(labels == data.test_y) >= base_accuracy - 0.05
    assert np.mean(labels == original) >= 0.9


def test_cli_writes_csv_output(trained, tmp_path):
    model_path, _, _, raw = trained
    paths = _render(raw[:3], tmp_path)
    out_csv = tmp_path / "out.csv"
    status, out, err = run_cli("predict", "--model-file", model_path, *paths,
                               "--output", out_csv, cwd=tmp_path)
    assert status == 0, err
    text = out_csv.read_bytes()
    assert b"\r" not in text
    assert text.decode().splitlines()[0] == "file,label," + ",".join(f"p{k}" for k in range(10))


def test_polarity_does_not_matter(trained):
    _, _, data, raw = trained
    light = [d / 255.0 for d in raw[:20]]
    dark = [1.0 - d / 255.0 for d in raw[:20]]
    np.testing.assert_array_equal(prepare_digits(light, data.normalization),
                                  prepare_digits(dark, data.normalization))


def test_preparation_uses_the_stored_normalization(trained):
    _, _, data, raw = trained
    norm = data.normalization
    x = prepare_digits([raw[0] / 255.0], norm.to_dict(), dtype=np.float64)
    assert x.shape == (1, 1, 32, 32) and x.dtype == np.float64
    pixels = x * norm.std + norm.mean              # back on the 0-255 scale
    np.testing.assert_allclose(pixels, np.rint(pixels), atol=1e-9)   # whole grey levels
    np.testing.assert_allclose(pixels[0, 0, :2], 0, atol=1e-9)       # MNIST's 2-pixel padding
    digit = to_mnist_28(raw[0] / 255.0)
    np.testing.assert_allclose(pixels[0, 0, 2:30, 2:30], digit, atol=1e-9)


def test_mnist_digit_survives_the_round_trip():
    raw = read_idx(os.path.join(DATA, "t10k-images-idx3-ubyte.gz"))[:50]
    again = np.array([to_mnist_28(d / 255.0) for d in raw])
    # The digits are re-cropped, re-fitted to 20x20 and re-centred: close, not identical.
    assert np.abs(again.astype(int) - raw).mean() < 25


def test_npy_stack_and_single_image(trained, tmp_path):
    model_path, _, _, raw = trained
    np.save(tmp_path / "stack.npy", raw[:4])
    np.save(tmp_path / "one.npy", raw[4].astype(np.float32) / 255)
    names, images = read_digit_images([tmp_path / "stack.npy", tmp_path / "one.npy"])
    assert names == [f"{tmp_path / 'stack.npy'}[{i}]" for i in range(4)] + [
        str(tmp_path / "one.npy")]
    for a, b in zip(images, list(raw[:5])):
        np.testing.assert_allclose(a, b / 255.0, atol=1e-6)
    status, out, err = run_cli("predict", "--model-file", model_path, tmp_path / "stack.npy",
                               tmp_path / "one.npy", cwd=tmp_path)
    assert status == 0 and len(out.strip().splitlines()) == 6, err


@pytest.mark.parametrize("content, message", [
    (None, "no digit found"),
    (b"not an image", "not an image"),
])
def test_cli_bad_images_are_one_line(trained, tmp_path, content, message):
    model_path = trained[0]
    path = tmp_path / "bad.png"
    if content is None:
        from PIL import Image
        Image.fromarray(np.full((30, 40), 255, np.uint8)).save(path)
    else:
        path.write_bytes(content)
    status, _, err = run_cli("predict", "--model-file", model_path, path, cwd=tmp_path)
    assert_one_line_error(status, err, 1, str(path), message)


def test_missing_image_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_digit_images([tmp_path / "nope.png"])
