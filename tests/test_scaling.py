"""The units the kernels cut a training step into, and the scaling model built on them
(bench/scaling.py): every region that matters at batch >= 32 has units for 64 threads."""
import numpy as np
import pytest

import fastconv
from bench import scaling
from fastconv._kernels import _trace


@pytest.fixture(autouse=True)
def _restore_threads():
    before = fastconv.get_thread_setting()
    yield
    fastconv.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maxpool", "convnet", "cifar", "cifar-bn"])
def test_every_region_over_one_percent_has_units_for_64_threads(name):
    trainer, x, y = scaling._trainer(name, 32)
    trainer.step(x, y)
    insts, _ = scaling.trace_step(trainer, x, y, 1)
    total = sum(sum(i["times"]) for i in insts)
    assert insts, "a traced step reported no parallel region"
    few = scaling.few_unit_regions(insts, total)
    assert not few, f"{name}: regions over 1% of the step with fewer than 64 units: {few}"
    # The exemptions are few and each says why.
    assert set(scaling.FEWER_UNITS) <= {"linear_forward", "linear_backward"}
    assert all(len(why) > 10 for why in scaling.FEWER_UNITS.values())
    # And the big ones by count, whatever the clock says.
    for inst in insts:
        if inst["region"].startswith(("conv2d_", "winograd_")) and inst["n_units"] > 0:
            assert inst["n_units"] >= 64, inst["region"]


def test_a_trace_records_each_unit_once_and_nothing_when_off():
    from fastconv import functional as F
    x = np.random.default_rng(0).standard_normal((32, 8, 12, 12)).astype(np.float32)
    weight = np.random.default_rng(1).standard_normal((16, 8, 3, 3)).astype(np.float32)
    F.conv2d_forward(x, weight)
    _trace.start(1000)
    F.conv2d_forward(x, weight, n_threads=2)
    records, dropped = _trace.stop()
    units = sorted(r[1] for r in records if r[0] == "conv2d_forward")
    n_units = {r[2] for r in records if r[0] == "conv2d_forward"}
    assert dropped == 0 and len(n_units) == 1
    assert units == list(range(n_units.pop()))
    _trace.start(1)
    F.conv2d_forward(x, weight)
    records, dropped = _trace.stop()
    assert len(records) == 1 and dropped > 0
    F.conv2d_forward(x, weight)     # off: nothing is recorded, nothing breaks
    assert _trace.stop() == ([], 0)


def test_region_time_follows_the_static_split():
    inst = {"region": "r", "n_units": 5, "times": [1.0, 2.0, 3.0, 4.0, 5.0]}
    assert scaling.region_time(inst, 1) == 15.0
    assert scaling.region_time(inst, 2) == 9.0        # [1, 2, 3] | [4, 5]
    assert scaling.region_time(inst, 5) == 5.0
    assert scaling.region_time(inst, 64) == 5.0       # idle threads change nothing
    divisible = {"region": "d", "n_units": 0, "times": [8.0]}
    assert scaling.region_time(divisible, 4) == 2.0


def test_instances_split_a_one_thread_trace_into_region_calls():
    records = [("a", 0, 2, 1.0), ("a", 1, 2, 1.0), ("a", 0, 2, 2.0), ("a", 1, 2, 2.0),
               ("d", 0, 0, 3.0), ("d", 0, 0, 4.0), ("b", 0, 1, 5.0)]
    got = [(i["region"], i["times"]) for i in scaling.instances(records)]
    assert got == [("a", [1.0, 1.0]), ("a", [2.0, 2.0]), ("d", [3.0]), ("d", [4.0]),
                   ("b", [5.0])]


@pytest.mark.slow
def test_the_model_reports_speedup_and_its_error_at_one_and_two_threads():
    r = scaling.model_case("maxpool", 4, repeats=2, traces=2, cost2=1e-6)
    assert set(r["error"]) == {"1", "2"}
    assert r["speedup"]["1"] == pytest.approx(1.0)
    assert all(r["predicted_s"][str(t)] > 0 for t in scaling.THREADS)
    # More threads never predict a slower step by more than the team costs they add.
    assert r["predicted_s"]["64"] <= r["predicted_s"]["1"]
