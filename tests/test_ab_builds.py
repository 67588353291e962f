"""``bench/compare_torch.py --baseline TREE``: two builds side by side (no PyTorch needed).

The numbers of a --quick run mean nothing; this proves the mode runs end to end against a
tree (here the repository itself), writes its schema, and that a worker really imports the
package from the tree it is given.
"""
import json
import os
import subprocess
import sys

import pytest

from bench._ab import AB_TARGET, paired_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "bench", "compare_torch.py")


def test_paired_summary_pairs_rounds():
    s = paired_summary([10.0, 20.0, 30.0], [10.0, 10.0, 40.0])
    assert s["paired"] == [1.0, 2.0, 0.75]
    assert s["median_paired_ratio"] == 1.0 and s["rounds_faster"] == 1
    assert s["ratio_of_medians"] == 2.0


@pytest.mark.slow
def test_quick_ab_run_writes_the_schema(tmp_path):
    out = tmp_path / "ab.json"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--baseline", REPO, "--quick", "--models", "maxpool",
         "--train-batches", "1", "--infer-batches", "8", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["target"] == AB_TARGET and data["old_tree"] == REPO
    assert set(data["cells"]) == {"maxpool train 1", "maxpool infer 8"}
    assert data["processes_per_build"] == 2
    for cell in data["cells"].values():
        assert cell["new"] > 0 and cell["old"] > 0 and len(cell["paired"]) == 1
        # A build's run of a round is the mean of its processes' runs.
        for side in ("new", "old"):
            per = cell[side + "_per_process"]
            assert sorted(per) == [f"{side} 0", f"{side} 1"]
            assert cell[side + "_runs"][0] == sum(r[0] for r in per.values()) / 2
    assert set(data["fastpath"]) == {"maxpool train 1", "maxpool infer 1"}
    assert "paired" in proc.stdout


def test_baseline_without_a_package_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--baseline", str(tmp_path), "--quick"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no fastconv package there" in proc.stderr


def test_worker_imports_the_given_tree(tmp_path):
    # A fake package in another tree: the worker must import it, not the repository's.
    fake = tmp_path / "fastconv"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('the fake tree was imported')\n")
    proc = subprocess.run([sys.executable, SCRIPT, "--worker", "fastconv", "--fastconv-from",
                           str(tmp_path), "--threads", "1", "--dataset-size", "8"],
                          cwd=REPO, input="", capture_output=True, text=True, timeout=120)
    assert "the fake tree was imported" in proc.stderr
