"""Sphinx configuration of fastconv's user guide and API reference.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning into an error, and :func:`_require_docstring` makes a public
object without a docstring a warning, so the build fails on one.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))
# Local extensions: _ext/fastconv_cli.py renders the command-line reference from argparse.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

import fastconv  # noqa: E402  (after the path insert)

project = "fastconv"
author = "the fastconv developers"
copyright = "2026, the fastconv developers"
release = fastconv.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "fastconv_cli",
]

autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

intersphinx_mapping = {}
html_theme = "alabaster"
exclude_patterns = ["_build", "_ext"]
nitpicky = False


def _require_docstring(app, what, name, obj, options, lines):
    """Warn about a documented public object that has no docstring.

    autodoc has already resolved inherited docstrings (``autodoc_inherit_docstrings``): a
    layer's ``forward`` documented once on :class:`fastconv.nn.Module` counts, as it does
    for ``help()``. numpydoc's own GL08 check reads only ``__doc__`` and would ask every
    override to repeat its base class's text.
    """
    if what in ("function", "class", "method", "property", "exception") and \
            not any(line.strip() for line in lines):
        from sphinx.util import logging
        logging.getLogger(__name__).warning(f"{name} has no docstring", type="fastconv",
                                            subtype="docstring")


def setup(app):
    # Before numpydoc (priority 500) rewrites the lines.
    app.connect("autodoc-process-docstring", _require_docstring, priority=100)
