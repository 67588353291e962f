"""One small instance of every registered module, for the layer harness and the fuzz.

Adding a layer means adding one entry to ``CASES``: a factory ``(dtype, seed) -> module``,
the shape of a typical input, and ``HYPER`` values the fuzz may assign to its
hyperparameters (valid and invalid ones). ``tests/test_layers.py`` fails for a registered
module without an entry.
"""
import numpy as np

from fastconv import nn

_SMALL_KERNEL = np.array([0.25, 0.5, 0.25])


def _seq(dtype, seed):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, dtype=dtype, rng=rng), nn.Tanh(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12, 4, dtype=dtype, rng=rng), nn.LogSoftmax())


def _bn(dtype, seed):
    m = nn.BatchNorm2d(2, dtype=dtype)
    rng = np.random.default_rng(seed)
    m.weight[...] = rng.uniform(0.5, 1.5, 2)
    m.bias[...] = rng.standard_normal(2)
    m.running_mean[...] = rng.standard_normal(2)
    m.running_var[...] = rng.uniform(0.5, 2, 2)
    return m


# name: (factory(dtype, seed), input shape)
CASES = {
    "Conv2d": (lambda d, s: nn.Conv2d(2, 3, 3, padding=1, dtype=d, rng=s), (2, 2, 6, 6)),
    "Linear": (lambda d, s: nn.Linear(5, 3, dtype=d, rng=s), (3, 5)),
    "Flatten": (lambda d, s: nn.Flatten(), (2, 2, 3, 3)),
    "MaxPool2d": (lambda d, s: nn.MaxPool2d(2), (2, 2, 6, 6)),
    "LPPool2d": (lambda d, s: nn.LPPool2d(2, 2), (2, 2, 6, 6)),
    "AvgPool2d": (lambda d, s: nn.AvgPool2d(2), (2, 2, 6, 7)),
    "Tanh": (lambda d, s: nn.Tanh(), (2, 3, 4, 4)),
    "Sigmoid": (lambda d, s: nn.Sigmoid(), (2, 3, 4, 4)),
    "ReLU": (lambda d, s: nn.ReLU(), (2, 3, 4, 4)),
    "LogSoftmax": (lambda d, s: nn.LogSoftmax(), (3, 5)),
    "Softmax": (lambda d, s: nn.Softmax(beta=0.7), (3, 5)),
    "SubtractiveNormalization": (
        lambda d, s: nn.SubtractiveNormalization(kernel=_SMALL_KERNEL, dtype=d), (2, 2, 5, 5)),
    "ContrastiveNormalization": (
        lambda d, s: nn.ContrastiveNormalization(kernel=_SMALL_KERNEL, dtype=d), (2, 2, 5, 5)),
    "Dropout": (lambda d, s: nn.Dropout(0.3), (2, 3, 4, 4)),
    "RandomRotation": (lambda d, s: nn.RandomRotation(0.3), (2, 1, 6, 6)),
    "RandomAffine": (lambda d, s: nn.RandomAffine(0.3, translate=(0.1, 0.2), scale=(0.8, 1.2),
                                                  shear=0.3), (2, 2, 6, 7)),
    "BatchNorm2d": (_bn, (3, 2, 4, 4)),
    "Sequential": (_seq, (2, 2, 6, 6)),
}

# Values the fuzz assigns to hyperparameters, valid and invalid alike.
_PAIRS = [1, 2, 3, 9, 16, (1, 2), (2, 1), 0, -1, 2**31, [1, 1]]
HYPER = {
    "Conv2d": {"stride": _PAIRS, "padding": [0, 1, 2, (1, 0), 8, -1, 2**30, [1, 1]]},
    "MaxPool2d": {"kernel_size": _PAIRS, "stride": _PAIRS},
    "LPPool2d": {"kernel_size": _PAIRS, "stride": _PAIRS, "p": [1.0, 2.0, 3.0, 0.5, "x"]},
    "AvgPool2d": {"kernel_size": _PAIRS, "stride": _PAIRS},
    "Softmax": {"beta": [1.0, -2.0, 0.0, float("nan")]},
    "SubtractiveNormalization": {"kernel": [np.array([0.0, 1.0, 0.0]), np.ones(5),
                                            np.ones((3, 3)), np.array([1.0, -1.0, 1.0]),
                                            np.ones(2)]},
    "ContrastiveNormalization": {"threshold": [1e-4, 0.5, -1.0]},
    "Dropout": {"p": [0.0, 0.5, 1.0]},
    "BatchNorm2d": {"eps": [1e-5, 1e-1, 0.0], "momentum": [0.1, 1.0, 2.0],
                    "training": [True, False]},
}


def make(name, dtype=np.float64, seed=0):
    """A fresh module of case ``name`` with a seeded generator for its random layers."""
    m = CASES[name][0](dtype, seed)
    m.set_rng(np.random.default_rng(seed))
    return m


def input_for(name, rng, dtype=np.float64):
    return rng.standard_normal(CASES[name][1]).astype(dtype)
