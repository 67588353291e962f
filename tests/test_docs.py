"""The user guide's Python runs as written; the README fits a screen and keeps the commands CI
runs; no page cites the project's own bookkeeping (issue or session numbers)."""
import doctest
import glob
import os
import re
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = sorted(glob.glob(os.path.join(ROOT, "docs", "guide", "*.rst")))


def python_blocks(text):
    """The bodies of the ``.. code-block:: python`` directives of an rst text, dedented."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() != ".. code-block:: python":
            i += 1
            continue
        i += 1
        while i < len(lines) and re.match(r"\s+:\w[\w-]*:", lines[i]):    # directive options
            i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            body.append(lines[i])
            i += 1
        blocks.append(textwrap.dedent("\n".join(body)))
    return blocks


def test_python_blocks_are_found():
    text = ".. code-block:: python\n   :caption: x\n\n   a = 1\n\n   b = a\nprose\n"
    assert python_blocks(text) == ["\na = 1\n\nb = a"]


@pytest.mark.parametrize("path", GUIDE, ids=os.path.basename)
def test_guide_page_runs(path, tmp_path, monkeypatch, capsys):
    """Each page's Python blocks, in order, in one namespace (as a reader types them), in an
    empty folder; then its ``>>>`` examples as doctests."""
    monkeypatch.chdir(tmp_path)
    text = open(path, encoding="utf-8").read()
    namespace = {"__name__": "__guide__"}
    for i, block in enumerate(python_blocks(text)):
        exec(compile(block, f"{os.path.basename(path)}, block {i + 1}", "exec"), namespace)
    failed, _ = doctest.testfile(path, module_relative=False, verbose=False,
                                 optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failed == 0


def test_readme_is_one_screen_and_keeps_the_ci_commands():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    assert len(text.splitlines()) < 150
    # .ci/run runs exactly these.
    assert 'pip install -e ".[test,dask,docs]"' in text
    assert re.search(r"^python -m pytest(\s|$)", text, re.M)
    assert "python -m sphinx -W --keep-going -b html docs docs/_build/html" in text
    assert 'python -m pytest -m "not slow"' in text


def test_no_internal_references():
    pages = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "docs", "index.rst")] + GUIDE
    for path in pages:
        text = open(path, encoding="utf-8").read()
        found = re.findall(r"\b(?:issues?|sessions?)[ -]\d+", text, re.I)
        assert not found, (path, found)
