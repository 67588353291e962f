"""The data set guide's Python example runs as written (its ``>>>`` lines are a doctest)."""
import doctest
import os

GUIDE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                     "guide", "datasets.rst")


def test_datasets_guide_example_runs():
    result = doctest.testfile(GUIDE, module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0
