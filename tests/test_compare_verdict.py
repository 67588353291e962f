"""The environment matrix's verdict in bench/compare_torch.py (no PyTorch needed)."""
from bench.compare_torch import SLOWER_MARGIN, env_verdict


def entry(paired):
    ordered = sorted(paired)
    return {"vs_set_num_threads_1": ordered[len(ordered) // 2],
            "paired_vs_set_num_threads_1": paired}


def test_faster_or_equal_is_ok():
    assert env_verdict(entry([1.0, 1.1, 0.9]), entry([1.2, 1.0, 1.05])) == "ok"


def test_losing_some_rounds_is_noise():
    v = env_verdict(entry([0.9, 1.02, 0.95, 1.01, 0.97]), entry([1.0] * 5))
    assert v.startswith("ok within noise (3/5, 0/5 rounds slower")


def test_losing_every_round_by_less_than_the_margin_is_noise():
    small = 1 - SLOWER_MARGIN / 3
    v = env_verdict(entry([1.0] * 5), entry([small] * 5))
    assert v.startswith("ok within noise (0/5, 5/5 rounds slower")


def test_losing_every_round_by_more_than_the_margin_is_slower():
    v = env_verdict(entry([0.85, 0.9, 0.8, 0.88, 0.86]), entry([1.0] * 5))
    assert v.startswith("SLOWER than 1 thread in every round")
