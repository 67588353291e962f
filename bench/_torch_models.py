"""The PyTorch side of ``bench/compare_torch.py``: the benchmark models, built from stock
PyTorch layers, and the weight copy from fastconv.

Importing this module imports torch (an optional benchmark dependency, ``pip install
torch==2.13.0``); the fastconv package itself never does.

Models (output log-probabilities N x 10):

* ``maxpool`` (input N x 1 x 32 x 32): conv 5x5 1->64, tanh, max-pool 2x2/2, conv 5x5 64->64, tanh, max-pool 2x2/2,
  flatten 1600, linear 128, tanh, linear 10, log-softmax.
* ``convnet`` (the homework's default, N x 1 x 32 x 32): the same with ``lp_pool2d(p=2)`` in
  place of max pooling, each followed by :class:`SubtractiveNormalization`.
* ``cifar`` (N x 3 x 32 x 32): three blocks of conv 3x3 padding 1 (3->32->64->128), ReLU,
  max-pool 2x2/2; flatten 2048, linear 128, ReLU, linear 10, log-softmax.
* ``cifar-bn``: the same with ``BatchNorm2d`` (eps 1e-5, momentum 0.1, as fastconv's) between
  each convolution and its ReLU.

``torch.nn.functional.lp_pool2d`` computes ``avg_pool2d(x^p) * (kh*kw)`` then ``^(1/p)``, that
is ``(sum_window x^p)^(1/p)``: the sum, not the mean, as Torch7's SpatialLPPooling and
fastconv's LPPool2d.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as TF

__all__ = ["MODEL_NAMES", "SubtractiveNormalization", "build_torch_model", "copy_weights",
           "weight_layers", "torch_params", "gaussian_kernel_1d"]

MODEL_NAMES = ("maxpool", "convnet", "cifar", "cifar-bn")


def gaussian_kernel_1d(size=7, sigma=0.25):
    """Torch7's ``image.gaussian1D(size, sigma)`` (sigma relative to size), amplitude 1."""
    i = np.arange(size, dtype=np.float64)
    return np.exp(-0.5 * ((i - (size - 1) / 2) / (sigma * size)) ** 2)


class SubtractiveNormalization(nn.Module):
    """Torch7's SpatialSubtractiveNormalization on (N, C, H, W), fixed H and W.

    ``y_c = x_c - corr(sum_c x_c, kn) / (C * a)``: ``kn`` is the 2-D Gaussian
    ``outer(g, g)`` scaled to sum 1, ``corr`` a zero-padded 'same' correlation (one
    ``conv2d`` of the channel sum, a single plane), and ``a = corr(ones, kn)`` the border
    coefficient, precomputed for the plane size, that undoes the pull of the zero padding
    towards 0 near the edges. The whole map is linear and has no parameters.
    """

    def __init__(self, channels, height, width, size=7, dtype=torch.float32):
        super().__init__()
        g = gaussian_kernel_1d(size)
        k = np.outer(g, g)
        k /= k.sum()
        kernel = torch.tensor(k, dtype=dtype).reshape(1, 1, size, size)
        self.pad = size // 2
        coef = TF.conv2d(torch.ones(1, 1, height, width, dtype=dtype), kernel,
                         padding=self.pad)
        self.register_buffer("kernel", kernel)
        self.register_buffer("inv_denominator", 1.0 / (channels * coef))

    def forward(self, x):
        mean = TF.conv2d(x.sum(dim=1, keepdim=True), self.kernel, padding=self.pad)
        return x - mean * self.inv_denominator


class LPPool2d(nn.Module):
    """``F.lp_pool2d(x, p, k, k)``: (sum over each k x k window of x^p)^(1/p)."""

    def __init__(self, p, kernel_size):
        super().__init__()
        self.p, self.kernel_size = p, kernel_size

    def forward(self, x):
        return TF.lp_pool2d(x, self.p, self.kernel_size, self.kernel_size)


def build_torch_model(name, dtype=torch.float32):
    """The PyTorch twin of the fastconv model ``name`` (weights: PyTorch's default init;
    :func:`copy_weights` replaces them)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; choose from {list(MODEL_NAMES)}")
    if name in ("cifar", "cifar-bn"):
        layers = []
        for c_in, c_out in ((3, 32), (32, 64), (64, 128)):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, dtype=dtype))
            if name == "cifar-bn":
                layers.append(nn.BatchNorm2d(c_out, dtype=dtype))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2048, 128, dtype=dtype),
                             nn.ReLU(), nn.Linear(128, 10, dtype=dtype), nn.LogSoftmax(dim=1))

    def conv(c_in):
        return nn.Conv2d(c_in, 64, 5, dtype=dtype)

    if name == "maxpool":
        layers = [conv(1), nn.Tanh(), nn.MaxPool2d(2),
                  conv(64), nn.Tanh(), nn.MaxPool2d(2)]
    else:
        layers = [conv(1), nn.Tanh(), LPPool2d(2, 2), SubtractiveNormalization(64, 14, 14,
                                                                              dtype=dtype),
                  conv(64), nn.Tanh(), LPPool2d(2, 2), SubtractiveNormalization(64, 5, 5,
                                                                               dtype=dtype)]
    layers += [nn.Flatten(), nn.Linear(1600, 128, dtype=dtype), nn.Tanh(),
               nn.Linear(128, 10, dtype=dtype), nn.LogSoftmax(dim=1)]
    return nn.Sequential(*layers)


# The layers that hold parameters, each with its weight and bias: the order of fastconv's
# ``model.params()`` (every layer's ``weight`` then ``bias``, layers in model order).
_PARAM_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


def weight_layers(model):
    """The Conv2d, BatchNorm2d and Linear layers of a torch model, in order."""
    return [m for m in model.modules() if isinstance(m, _PARAM_LAYERS)]


def copy_weights(torch_model, arrays):
    """Copy ``arrays`` (weight, bias, weight, bias, ... in layer order, as fastconv's
    ``model.params()``) into the torch model's Conv2d/BatchNorm2d/Linear layers.

    BatchNorm2d's running statistics are not copied: both frameworks start them at mean 0,
    variance 1.
    """
    layers = weight_layers(torch_model)
    if len(arrays) != 2 * len(layers):
        raise ValueError(f"copy_weights: {len(arrays)} arrays for {len(layers)} layers")
    with torch.no_grad():
        for i, layer in enumerate(layers):
            for param, a in ((layer.weight, arrays[2 * i]), (layer.bias, arrays[2 * i + 1])):
                if tuple(param.shape) != tuple(a.shape):
                    raise ValueError(f"copy_weights: layer {i} ({type(layer).__name__}) wants "
                                     f"{tuple(param.shape)}, got {a.shape}")
                param.copy_(torch.from_numpy(np.ascontiguousarray(a)))
    return torch_model


def torch_params(torch_model):
    """Weight and bias tensors in the order of fastconv's ``model.params()``."""
    out = []
    for layer in weight_layers(torch_model):
        out += [layer.weight, layer.bias]
    return out
