"""The package around the code: license, one version, entry points, example scripts' help,
line endings, and what the sdist carries."""
import argparse
import importlib.util
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_license_file_and_spdx_string():
    assert "BSD 3-Clause License" in _read("LICENSE")
    pyproject = _read("pyproject.toml")
    assert re.search(r'^license = "BSD-3-Clause"$', pyproject, re.M)
    assert 'license-files = ["LICENSE"]' in pyproject


def test_version_is_written_once():
    import fastconv
    pyproject = _read("pyproject.toml")
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M)
    assert re.search(r'^dynamic = \[.*"version"', project, re.M)
    assert 'attr = "fastconv._version.__version__"' in pyproject
    # The package under test: the checkout, or an installed wheel.
    package = os.path.dirname(os.path.abspath(fastconv.__file__))
    hits = [os.path.relpath(os.path.join(path, name), package)
            for path, _, files in os.walk(package) for name in files
            if name.endswith(".py") and "__version__ = " in _read(os.path.join(path, name))]
    assert hits == ["_version.py"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", fastconv.__version__)


def test_sdist_manifest_carries_the_test_helpers_and_data():
    manifest = _read("MANIFEST.in")
    assert "recursive-include tests *.py *.md *.json *.gz *.npz" in manifest
    assert "include LICENSE" in manifest


def _script_parser(name):
    path = os.path.join(ROOT, "python", name)
    if not os.path.exists(path):
        pytest.skip("python/ scripts are not in this tree")
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


@pytest.mark.parametrize("script", ["train_mnist.py", "result.py"])
def test_every_option_of_the_example_scripts_has_help(script):
    parser = _script_parser(script)
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    assert actions
    for action in actions:
        assert action.help, f"{script}: {action.dest} has no help text"


def test_every_option_of_the_command_has_help():
    from fastconv.cli import build_parser
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"fastconv {name}: {action.dest} has no help text"


def test_result_script_writes_lf_csv_like_the_command(mnist_dir, tmp_path):
    import subprocess
    import sys

    from fastconv import nn
    from fastconv.serialization import save_model

    from .test_cli_errors import subprocess_env
    script = os.path.join(ROOT, "python", "result.py")
    if not os.path.exists(script):
        pytest.skip("python/ scripts are not in this tree")
    model = tmp_path / "model.npz"
    save_model(model, nn.build_model("linear"), {"normalization": {"mean": 33.3, "std": 78.6}})
    out = tmp_path / "pred.csv"
    proc = subprocess.run([sys.executable, script, str(model), str(out), "--data", mnist_dir,
                           "--size", "small"], capture_output=True, text=True,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(b"Id,Prediction\n1,") and b"\r" not in data
    assert data.count(b"\n") == 1001


def test_index_page_readme_has_no_repository_relative_images_or_links():
    source = _read("setup.py")
    start = source.index("def _readme_for_index")
    namespace = {"re": re}
    exec(source[start:source.index("\nsetup(", start)], namespace)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        text = namespace["_readme_for_index"]()
    finally:
        os.chdir(cwd)
    assert "![" in _read("README.md")                        # GitHub keeps its figures
    assert not re.search(r"!\[[^\]]*\]\((?!https?://)", text)
    assert not re.search(r"\]\((?!https?://|#)", text)
    assert "bench/results/full/figures/batch_size.png` in the source repository" in text
