"""Every user error of the issue-13 reproductions: one line on stderr, exit 2 (usage) or 1
(runtime), no traceback; the library raises a named fastconv error for each malformed file.

The ``fastconv`` command runs in a subprocess (``python -m fastconv``) so that what a user
sees is exactly what is tested.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastconv import nn
from fastconv.serialization import ModelFileError, load_model, save_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from fastconv.datasets import SAMPLE_FOLDER  # noqa: E402

DATA = SAMPLE_FOLDER       # the MNIST sample shipped in the (installed) package


def subprocess_env(env=None):
    """os.environ plus ``env``, with PYTHONPATH leading to the fastconv under test (the
    checkout or the install the tests run against), whatever the working directory."""
    import fastconv
    full_env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    full_env["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    full_env.update(env or {})
    return full_env


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run ``python -m fastconv ARGS``; return (exit status, stdout, stderr)."""
    full_env = subprocess_env(env)
    proc = subprocess.run([sys.executable, "-m", "fastconv", *map(str, args)], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(status, err, expected_status, *fragments):
    assert status == expected_status, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.npz"
    save_model(path, nn.build_model("linear", seed=1), {"loss": "nll"})
    return path


def _with_config(path, config, **arrays):
    np.savez(path, __config__=np.array(json.dumps(config)), **arrays)
    return path


def _config(architecture):
    return {"format": "fastconv-model", "version": 1, "architecture": architecture,
            "metadata": {}}


# -- the malformed model files of the issue, each a ModelFileError -----------------------------
def _truncated(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "m.npz").write_bytes(data[:len(data) // 2])
    return tmp_path / "m.npz"


def _bit_flipped(tmp_path, good):
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x10       # inside a parameter array: the zip CRC catches it
    (tmp_path / "m.npz").write_bytes(bytes(data))
    return tmp_path / "m.npz"


def _empty(tmp_path, good):
    (tmp_path / "m.npz").write_bytes(b"")
    return tmp_path / "m.npz"


def _no_architecture(tmp_path, good):
    return _with_config(tmp_path / "m.npz", {"format": "fastconv-model", "version": 1,
                                             "metadata": {}})


def _list_config(tmp_path, good):
    np.savez(tmp_path / "m.npz", __config__=np.array(json.dumps([1, 2, 3])))
    return tmp_path / "m.npz"


def _deep_json(tmp_path, good):
    # Deep enough to exhaust the JSON decoder's recursion.
    text = '{"a": ' * 100000 + "1" + "}" * 100000
    np.savez(tmp_path / "m.npz", __config__=np.array(text))
    return tmp_path / "m.npz"


def _deep_modules(tmp_path, good):
    arch = {"type": "Flatten"}
    for _ in range(40):
        arch = {"type": "Sequential", "layers": [arch]}
    return _with_config(tmp_path / "m.npz", _config(arch))


def _unknown_keyword(tmp_path, good):
    arch = {"type": "Sequential", "layers": [
        {"type": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": [5, 5],
         "colour": "blue"}]}
    return _with_config(tmp_path / "m.npz", _config(arch))


def _html(tmp_path, good):
    (tmp_path / "m.npz").write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    return tmp_path / "m.npz"


def _wrong_shape(tmp_path, good):
    arch = nn.build_model("linear").config()
    return _with_config(tmp_path / "m.npz", _config(arch),
                        param_000=np.zeros((10, 5), np.float32),
                        param_001=np.zeros(10, np.float32))


def _huge_layer(tmp_path, good):
    arch = {"type": "Linear", "in_features": 10 ** 12, "out_features": 10 ** 12}
    return _with_config(tmp_path / "m.npz", _config(arch))


def _bad_setting_value(tmp_path, good):
    arch = {"type": "Conv2d", "in_channels": "one", "out_channels": 2, "kernel_size": 3}
    return _with_config(tmp_path / "m.npz", _config(arch))


def _unknown_type(tmp_path, good):
    return _with_config(tmp_path / "m.npz", _config({"type": "Transformer"}))


MALFORMED = {
    "truncated": (_truncated, "truncated or corrupt"),
    "bit-flipped": (_bit_flipped, "truncated or corrupt"),
    "empty": (_empty, "is empty"),
    "no architecture": (_no_architecture, 'no "architecture"'),
    "__config__ a list": (_list_config, "must be a JSON object; got a list"),
    "deep JSON": (_deep_json, "nested deeper than"),
    "deep modules": (_deep_modules, "nested deeper than"),
    "unknown keyword": (_unknown_keyword, "unknown setting(s) colour"),
    "HTML page": (_html, "not a model file"),
    "wrong shape": (_wrong_shape, "param_000 has shape (10, 5)"),
    "unknown type": (_unknown_type, "unknown module type 'Transformer'"),
    "huge layer": (_huge_layer, "holds 0 parameter arrays; the architecture needs 2"),
    "bad setting value": (_bad_setting_value, "architecture cannot be built"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_model_file_is_a_model_file_error(case, tmp_path, model_file):
    make, message = MALFORMED[case]
    path = make(tmp_path, model_file)
    with pytest.raises(ModelFileError, match=None) as info:
        load_model(path)
    assert message in str(info.value)
    assert info.value.path == str(path)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_cli_malformed_model_file_one_line(case, tmp_path, model_file):
    make, message = MALFORMED[case]
    path = make(tmp_path, model_file)
    status, _, err = run_cli("test", "--model-file", path, cwd=tmp_path)
    assert_one_line_error(status, err, 1, str(path), message, "--model-file")


def test_cli_debug_shows_the_traceback(tmp_path, model_file):
    path = _truncated(tmp_path, model_file)
    status, _, err = run_cli("test", "--model-file", path, "--debug", cwd=tmp_path)
    assert status == 1 and "Traceback" in err and "ModelFileError" in err


def test_model_with_50_outputs_is_refused_before_the_confusion_matrix(tmp_path):
    path = tmp_path / "fifty.npz"
    save_model(path, nn.build_model("linear", n_classes=50))
    with pytest.raises(ModelFileError, match="50 outputs per sample; 10 are needed"):
        load_model(path, input_shape=(1, 32, 32), n_outputs=10)
    status, _, err = run_cli("test", "--model-file", path, cwd=tmp_path)
    assert_one_line_error(status, err, 1, "50 outputs")


def test_valid_model_file_still_loads(model_file):
    model, meta = load_model(model_file, input_shape=(1, 32, 32), n_outputs=10)
    assert meta == {"loss": "nll"} and model.dtype == np.float32


# -- data and missing files ------------------------------------------------------------------
def test_cli_no_data_offline(tmp_path):
    env = {"FASTCONV_OFFLINE": "1", "FASTCONV_DATA": "", "XDG_CACHE_HOME": str(tmp_path)}
    status, _, err = run_cli("train", "--save", tmp_path / "run", cwd=tmp_path, env=env)
    assert_one_line_error(status, err, 1, "cannot load MNIST", "--data")


def test_cli_data_folder_that_does_not_exist_is_not_replaced_by_another(tmp_path):
    # FASTCONV_DATA points at real files: a mistyped --data must not silently use them.
    env = {"FASTCONV_DATA": DATA}
    status, _, err = run_cli("train", "--data", tmp_path / "no-such", "--save",
                             tmp_path / "run", cwd=tmp_path, env=env)
    assert_one_line_error(status, err, 1, "--data", "no such folder")
    assert not (tmp_path / "run").exists()


def test_cli_wrong_data_files(tmp_path):
    # The shipped sample holds a small subset: valid IDX files that are not the canonical MNIST.
    status, _, err = run_cli("train", "--data", DATA, "--save", tmp_path / "run", cwd=tmp_path)
    assert_one_line_error(status, err, 1, "sha256 mismatch", "--data")


def test_cli_test_without_a_model(tmp_path):
    status, _, err = run_cli("test", cwd=tmp_path)
    assert_one_line_error(status, err, 1, os.path.join("results", "model.npz"),
                          "no such model file", "--model-file")


# -- arguments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["--seed", "-1"], "--seed: must be >= 0; got '-1'"),
    (["--t0", "-1"], "--t0: must be >= 0; got '-1'"),
    (["--epochs", "0"], "--epochs: must be >= 1; got '0'"),
    (["--epochs", "-1"], "--epochs: must be >= 1; got '-1'"),
    (["--learning-rate", "0"], "--learning-rate: must be > 0; got '0'"),
    (["--momentum", "1"], "--momentum: must be >= 0 and < 1; got '1'"),
    (["--batch-size", "x"], "--batch-size: expected an integer; got 'x'"),
    (["--learning-rate", "nan"], "expected a finite number; got 'nan'"),
    (["--model", "resnet"], "invalid choice: 'resnet'"),
])
def test_cli_bad_arguments_are_usage_errors(args, fragment, tmp_path):
    status, _, err = run_cli("train", *args, cwd=tmp_path)
    assert_one_line_error(status, err, 2, fragment, "fastconv train --help")


def test_cli_no_command_is_a_usage_error(tmp_path):
    status, _, err = run_cli(cwd=tmp_path)
    assert_one_line_error(status, err, 2)


# -- the save folder, before any work -----------------------------------------------------------
def test_cli_save_naming_a_file_fails_before_loading_data(tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("precious")
    # Offline with no data: had the data been looked for first, the error would be about it.
    env = {"FASTCONV_OFFLINE": "1", "FASTCONV_DATA": "", "XDG_CACHE_HOME": str(tmp_path)}
    status, _, err = run_cli("train", "--save", target, cwd=tmp_path, env=env)
    assert_one_line_error(status, err, 1, f"--save {target}", "is a file",
                          "another --save")
    assert target.read_text() == "precious"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_cli_unwritable_save_fails_before_loading_data(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    env = {"FASTCONV_OFFLINE": "1", "FASTCONV_DATA": "", "XDG_CACHE_HOME": str(tmp_path)}
    try:
        status, _, err = run_cli("train", "--save", folder / "run", cwd=tmp_path, env=env)
    finally:
        folder.chmod(0o700)
    assert_one_line_error(status, err, 1, "cannot be written")


# -- package entry points ----------------------------------------------------------------------
def test_version_everywhere_is_the_one_version():
    import fastconv
    from fastconv._version import __version__
    assert fastconv.__version__ == __version__
    status, out, err = run_cli("--version")
    assert status == 0 and out.strip() == f"fastconv {__version__}", (out, err)


def test_python_dash_m_fastconv_shows_help():
    status, out, _ = run_cli("--help")
    assert status == 0 and "train" in out and "predict" in out and "--version" in out
