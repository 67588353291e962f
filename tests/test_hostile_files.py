"""Hostile model files, checkpoints and images: each ends in one clear error, within a small
memory budget, before anything large is allocated or built.

The crafted files live in ``tests/hostile_files.py``; the bombs run in a subprocess whose
address space is limited, so that a regression fails the test instead of exhausting the
machine.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv import cli, nn
from fastconv.datasets.images import ImageError, read_digit_images
from fastconv.serialization import ModelFileError, load_model, read_npz, save_model

from . import hostile_files as hf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSS_LIMIT_MB = 512

BOMB_RUNNER = r"""
import pathlib, resource, sys, tempfile, warnings
# Address space, not RSS: an allocation past it is a MemoryError instead of the OOM killer.
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
warnings.simplefilter("error")      # a warning on the way is a failure too
from tests.hostile_files import BOMBS, ERRORS, open_file
root = tempfile.TemporaryDirectory()
for i, (name, (kind, build)) in enumerate(BOMBS.items()):
    folder = pathlib.Path(root.name, str(i))
    folder.mkdir()
    try:
        path = build(folder)
        assert path.stat().st_size < 2**20, "crafted file too large"
        open_file(kind, path)
        print(f"{name}|no error", flush=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{name}|{type(exc).__name__}|{len(str(exc).splitlines())}|{first}", flush=True)
# VmHWM: this process's own peak. ru_maxrss is kept across exec on Linux, so it would report
# the peak of the (large) pytest process that started this one.
try:
    peak = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("maxrss_kb|", peak, flush=True)
root.cleanup()
"""


def test_twenty_bombs_end_in_one_clear_error_within_512_mb():
    """Architecture bombs, oversized and lying entries, PNG/TIFF/.npy bombs: each file is
    under 1 MB, each ends in its kind's error class with a one-line message, and the
    process running all of them peaks below 512 MB RSS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", BOMB_RUNNER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = dict(line.split("|", 1) for line in proc.stdout.splitlines())
    assert len(hf.BOMBS) == 20
    wrong = []
    for name, (kind, _) in hf.BOMBS.items():
        parts = rows.get(name, "missing").split("|")
        if parts[0] != hf.ERRORS[kind] or parts[1] != "1":
            wrong.append(f"{name}: {rows.get(name)}")
    assert not wrong, "\n".join(wrong)
    maxrss_mb = int(rows["maxrss_kb"]) / 1024
    assert maxrss_mb < RSS_LIMIT_MB, f"peak RSS {maxrss_mb:.0f} MB"


# -- bounded loading ------------------------------------------------------------------------
def test_npy_header_declaring_10_12_elements_is_a_model_file_error(tmp_path):
    path = hf.npy_header_1e12(tmp_path)
    with pytest.raises(ModelFileError, match=r"param_000 declares shape \(1000000, 1000000\)"):
        load_model(path)
    with pytest.raises(ModelFileError, match="declares shape"):
        read_npz(path)


def test_read_npz_checks_entry_names_before_reading(tmp_path, monkeypatch):
    path = hf.checkpoint_unexpected_entry(tmp_path)
    read = []
    monkeypatch.setattr(np.lib.format, "read_array",
                        lambda *a, **k: read.append(1) or np.zeros(1))
    with pytest.raises(ModelFileError, match="unexpected entries payload"):
        read_npz(path, "checkpoint", allowed=lambda name: name != "payload")
    assert read == []


def test_declared_architecture_is_checked_before_building(tmp_path, monkeypatch):
    """A small file declaring a huge Linear never reaches a layer's constructor."""
    from fastconv.nn import _weighted
    path = hf.linear_15000(tmp_path)
    built = []
    # Records the weights a constructor would draw (a 1-element stand-in keeps memory small).
    monkeypatch.setattr(_weighted, "torch7_uniform", lambda rng, shape, fan_in, dtype:
                        built.append(shape) or np.zeros((1,) * len(shape), dtype))
    with pytest.raises(ModelFileError, match=r"needs \(15000, 15000\)"):
        load_model(path)
    assert built == []


@pytest.mark.parametrize("command", ["test", "predict"])
def test_cli_refuses_a_padding_bomb_before_running_it(tmp_path, capsys, command):
    """The CLI checks that the model fits the data on one sample; a padding that would
    make that sample's activations huge is refused first."""
    path = hf.padding_bomb(tmp_path)
    assert cli.main([command, "--model-file", str(path), "--size", "small"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would produce" in err[0], err


def test_a_valid_model_still_loads_within_its_budget(tmp_path):
    model = nn.build_model("convnet")
    save_model(tmp_path / "m.npz", model, {"loss": "nll"})
    loaded, meta = load_model(tmp_path / "m.npz", input_shape=(1, 32, 32), n_outputs=10)
    for a, b in zip(model.params(), loaded.params()):
        np.testing.assert_array_equal(a, b)


# -- values -----------------------------------------------------------------------------
def _bn_model(tmp_path, **replace):
    model = nn.Sequential(nn.BatchNorm2d(1, dtype=np.float32), nn.Flatten(),
                          nn.Linear(1024, 10))
    save_model(tmp_path / "good.npz", model)
    members = dict(hf.model_entries(tmp_path / "good.npz"))
    for name, value in replace.items():
        members[name + ".npy"] = hf.npy_bytes(value)
    return hf.write_zip(tmp_path / "m.npz", list(members.items()))


@pytest.mark.parametrize("entry, value, message", [
    ("param_002", np.full((10, 1024), np.nan, np.float32), "param_002 holds NaN or infinite"),
    ("param_000", np.array([np.inf], np.float32), "param_000 holds NaN or infinite"),
    ("buffer_000", np.array([np.nan], np.float32), "buffer_000 holds NaN or infinite"),
    ("buffer_001", np.array([-np.inf]), "buffer_001 holds NaN or infinite"),
    ("buffer_000", np.array(["2020-01-01"], "datetime64[D]"), "buffer_000 has dtype datetime64"),
    ("buffer_001", np.array([1 + 2j]), "buffer_001 has dtype complex128"),
    ("buffer_000", np.zeros(1, [("a", "f8")]), "buffer_000 has dtype"),
    ("param_001", np.zeros(1, np.int64), "param_001 has dtype int64"),
])
def test_non_finite_or_non_float_values_are_refused(tmp_path, entry, value, message):
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(")):
        load_model(_bn_model(tmp_path, **{entry: value}))


def test_cli_test_refuses_nan_parameters_in_one_line(tmp_path, capsys):
    model = nn.build_model("linear")
    model.params()[0][0, 0] = np.nan
    save_model(tmp_path / "m.npz", model)
    assert cli.main(["test", "--model-file", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "param_000 holds NaN or infinite values" in err[0], err


# -- images in predict ------------------------------------------------------------------
@pytest.fixture
def normalized_model(tmp_path):
    return hf.save_small_model(tmp_path / "model.npz",
                               {"normalization": {"mean": 25.0, "std": 70.0}})


@pytest.mark.parametrize("build, message", [
    (hf.png_50000, "is too large to decode"),
    (hf.png_9400, "is 9400x9400 pixels"),
    (hf.tiff_nan, "holds NaN or infinite values"),
    (hf.npz_named_npy, "is an .npz archive, not an .npy array"),
    (hf.npy_8tb, "declares shape (1048576, 1048576, 1048576)"),
    (hf.npy_header_lie, "but holds 10 bytes"),
])
def test_predict_refuses_hostile_images_in_one_line(tmp_path, capsys, normalized_model,
                                                    build, message):
    image = build(tmp_path)
    status = cli.main(["predict", "--model-file", str(normalized_model), str(image)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith("fastconv predict: error: image ") and message in err[0], err


def test_image_size_is_checked_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1))
    with pytest.raises(ImageError, match="12000x12000"):
        read_digit_images([hf.png_12000(tmp_path)])
    assert decoded == []


def _digit_png(path):
    from PIL import Image
    a = np.full((40, 30), 255, np.uint8)
    a[8:32, 12:18] = 0
    Image.fromarray(a).save(path)
    return path


def test_predict_without_normalization_refits_it_and_warns(tmp_path, capsys, mnist_dir):
    """A model saved without metadata: predict uses the MNIST training set's normalization,
    as ``test`` does, and says so in one line with the fix; the result equals that of the
    same model saved with that normalization."""
    from fastconv.datasets import load_mnist
    image = str(_digit_png(tmp_path / "one.png"))
    bare = hf.save_small_model(tmp_path / "bare.npz")
    assert cli.main(["predict", "--data", mnist_dir, "--size", "small", "--model-file",
                     str(bare), image]) == 0
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1, err
    assert "records no input normalization" in err and "data.metadata()" in err, err
    norm = load_mnist(mnist_dir, size="small").normalization.to_dict()
    saved = hf.save_small_model(tmp_path / "saved.npz", {"normalization": norm})
    assert cli.main(["predict", "--data", mnist_dir, "--size", "small", "--model-file",
                     str(saved), image]) == 0
    out2, err2 = capsys.readouterr()
    assert out2 == out and err2 == ""


# -- found by tests/fuzz_files.py ---------------------------------------------------------
@pytest.mark.parametrize("architecture, metadata, message", [
    ({"type": "Flatten"}, {"loss": []}, "metadata.loss [] is not one of"),
    ({"type": "Flatten", "a\nb": 1}, {}, "unknown setting(s) 'a\\nb'"),
])
def test_hostile_json_is_one_line(tmp_path, architecture, metadata, message):
    path = hf.write_zip(tmp_path / "m.npz",
                        [("__config__.npy", hf.config_bytes(architecture, metadata))])
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_predict_on_the_test_set_warns_without_normalization(tmp_path, capsys, mnist_dir,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    bare = hf.save_small_model(tmp_path / "bare.npz")
    assert cli.main(["predict", "--data", mnist_dir, "--size", "small", "--model-file",
                     str(bare)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "records no input normalization" in err[0], err
