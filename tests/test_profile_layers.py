"""bench/profile_layers.py runs and accounts for every layer (fused pairs as one row)."""
import numpy as np

from bench import profile_layers


def test_profile_rows_and_times():
    rows, fwd, bwd, other, plain = profile_layers.profile("maxpool", 2, steps=2)
    assert rows[1].endswith("Tanh+MaxPool2d") and rows[2].endswith("Conv2d")
    assert len(rows) == len(fwd) == len(bwd) == 9       # 11 layers, two fused pairs
    assert np.all(fwd > 0) and np.all(bwd > 0) and np.all(other > 0) and plain > 0


def test_main_prints_a_table(capsys):
    import fastconv
    try:
        profile_layers.main(["--model", "convnet", "--batch", "1", "--steps", "2",
                             "--threads", "1"])
    finally:
        fastconv.set_num_threads(None)
    out = capsys.readouterr().out
    assert "batch 1:" in out and "SGD update" in out and "Conv2d" in out


def test_profile_takes_each_models_input():
    # The CIFAR-shaped net with batch norm: 3-channel input, a BatchNorm2d row per block.
    rows, fwd, bwd, other, plain = profile_layers.profile("cifar-bn", 2, steps=1)
    assert rows[0].endswith("Conv2d") and rows[1].endswith("BatchNorm2d")
    assert rows[2].endswith("ReLU+MaxPool2d")
    assert np.all(fwd > 0) and np.all(bwd > 0) and plain > 0
