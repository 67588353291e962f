"""Cut the small MNIST subset in fastconv/datasets/mnist_sample from the four real MNIST files.

Usage::

    python tests/make_test_data.py [MNIST_FOLDER]

MNIST_FOLDER defaults to $FASTCONV_DATA. The source files must be the canonical ones (their
sha256 is checked), and the output is deterministic (gzip without time stamp or name), so
rerunning this script reproduces the content of fastconv/datasets/mnist_sample bit for bit;
tests/test_datasets.py checks that.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

N_TRAIN = 1000
N_TEST = 200
OUT = Path(__file__).resolve().parent.parent / "fastconv" / "datasets" / "mnist_sample"


def cut(source, out=OUT):
    """Write the first N_TRAIN train and N_TEST test images and labels of ``source`` to ``out``.

    Returns the sha256 table of the uncompressed output files.
    """
    from fastconv.datasets import FILES, SHA256, read_idx, write_idx
    from fastconv.datasets._idx import read_bytes

    out.mkdir(parents=True, exist_ok=True)
    table = {}
    for name in FILES:
        path = Path(source) / name
        digest = hashlib.sha256(read_bytes(path)).hexdigest()
        if digest != SHA256[name]:
            raise SystemExit(f"{path}: not the canonical MNIST file (sha256 {digest})")
        n = N_TRAIN if name.startswith("train") else N_TEST
        raw = write_idx(out / name, read_idx(path)[:n])
        table[name] = hashlib.sha256(raw).hexdigest()
    (out / "sha256.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "README.md").write_text(_readme(table, out))
    return table


def _readme(table, out):
    rows = "\n".join(
        f"| {name} | {(out / name).stat().st_size} | {digest} |" for name, digest in table.items())
    return f"""# A small real-MNIST sample, shipped with the package

Used by the tests, the smoke preset of the experiment matrix (also on Dask workers that have
only fastconv installed) and `fastconv.datasets.load_mnist_sample()`.

The first {N_TRAIN} training images and labels and the first {N_TEST} test images and labels of
the canonical MNIST files, written as valid IDX files with deterministic gzip (no time stamp, no
embedded name) by `tests/make_test_data.py`:

    python tests/make_test_data.py /path/to/mnist    # or with FASTCONV_DATA set

The script checks the source files' canonical sha256 first. Rerunning it reproduces the
uncompressed content bit for bit (`tests/test_datasets.py` checks that whenever FASTCONV_DATA
is set), and the gzip bytes too wherever zlib compresses the same way.

`sha256.json` holds the sha256 of each *uncompressed* file, for
`load_mnist(folder=..., expected_sha256=...)`:

| file | gzip bytes | sha256 of the uncompressed file |
| --- | --- | --- |
{rows}

Labels of the first {N_TRAIN} training images (digits 0 to 9): {_counts(out, "train")}.
Labels of the first {N_TEST} test images: {_counts(out, "t10k")}.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, derived from NIST data, and
is distributed under the Creative Commons Attribution-Share Alike 3.0 license; this subset is
redistributed under the same license.
"""


def _counts(out, prefix):
    from fastconv.datasets import read_idx
    labels = read_idx(out / f"{prefix}-labels-idx1-ubyte.gz")
    return " ".join(str(c) for c in np.bincount(labels, minlength=10))


if __name__ == "__main__":
    src = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FASTCONV_DATA")
    if not src:
        raise SystemExit(__doc__)
    for name, digest in cut(src).items():
        print(f"{digest}  {name}")
