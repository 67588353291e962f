"""The homework's models, by name, with its variants, sized to the data.

By default they take 1x32x32 inputs (MNIST zero-padded to 32x32) and produce 10 class scores,
as the homework's; ``input_shape`` and ``n_classes`` size them to any data set (a
:class:`fastconv.datasets.Dataset` gives both). The head appended for the loss (LogSoftmax for
``nll``, Tanh for ``mse``, nothing for ``margin``) is part of the returned network, as in the
Torch7 tutorial.
"""
import numpy as np

from .._validation import check_int
from ._init import check_dtype
from .activation import LogSoftmax, ReLU, Tanh
from .containers import Sequential
from .conv import Conv2d
from .linear import Flatten, Linear
from .loss import LOSSES
from .normalization import BatchNorm2d, SubtractiveNormalization
from .pooling import LPPool2d, MaxPool2d
from .stochastic import Dropout, RandomAffine, RandomRotation

__all__ = ["build_model", "MODELS"]

MODELS = ("linear", "mlp", "convnet", "convnet-max", "convnet-bn")


def _conv_side(side, shrink=4):
    """Height or width after the two conv + pool 2x2/2 blocks (0 when too small); a 5x5
    convolution without padding takes ``shrink`` = 4 pixels, the padded 3x3 pairs none."""
    for _ in range(2):
        side = (side - shrink) // 2 if side >= shrink + 2 else 0
    return side


def build_model(name="convnet", *, loss="nll", input_shape=(1, 32, 32), n_classes=10,
                extra_conv=False, dropout=0.0, rotate=0.0, translate=0.0, scale=(1.0, 1.0),
                shear=0.0, dtype=np.float32, seed=1):
    """Build one of the homework's networks, sized to the data.

    Parameters
    ----------
    name : {"linear", "mlp", "convnet", "convnet-max"}
        ``linear``: flatten C*H*W -> linear ``n_classes``. ``mlp``: C*H*W -> 512 -> tanh ->
        ``n_classes``. ``convnet`` (the tutorial's CPU model): conv 5x5 C->64, tanh, L2
        pooling 2x2/2, subtractive normalization (7-tap Gaussian), conv 5x5 64->64, tanh,
        L2 pooling, subtractive normalization, flatten, linear 128, tanh, linear
        ``n_classes``. ``convnet-max`` (the tutorial's GPU variant): the same with max
        pooling and ReLU and no normalization. ``convnet-bn`` (a modern small net, beyond
        the homework): two blocks of two 3x3 padded convolutions, each followed by batch
        normalization and ReLU, then 2x2 max pooling (C->32->32, 32->64->64), flatten,
        linear 256, ReLU, linear ``n_classes``.
    loss : {"nll", "mse", "margin"}
        Chooses the head appended to the network.
    input_shape : (int, int, int)
        One sample's (C, H, W), e.g. ``data.input_shape``; the convnets need H, W >= 16.
    n_classes : int
        Class scores the network produces, e.g. ``data.n_classes`` (>= 2).
    extra_conv : bool
        Add a third convolution (3x3, 64->64, padding 1, same non-linearity; with batch
        normalization in ``convnet-bn``) after the second block (convnets only).
    dropout : float
        Dropout probability before each fully connected layer (0 disables).
    rotate : float
        sigma in radians of a RandomRotation input layer (0 disables).
    translate, scale, shear : float, (float, float), float
        A random affine warp of each training image: shifts up to ``translate`` of the
        width and height, a scale factor in ``scale``, a shear angle up to ``shear``
        radians, with the rotation above: a :class:`RandomAffine` input layer in place of
        the RandomRotation (the defaults add none).
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
    seed : int
        Seeds the initial weights and the model's random layers.

    Returns
    -------
    Sequential

    Shape:
        The convnets' flattened features are 64 * h * w with
        h = ((H - 4) // 2 - 4) // 2, w likewise: 64 * 5 * 5 = 1600 for 32x32.

    Examples
    --------
    >>> from fastconv import nn
    >>> model = nn.build_model("convnet", input_shape=(3, 32, 32), n_classes=10)
    >>> model[0].in_channels, model[-2].out_features
    (3, 10)
    """
    if name not in MODELS:
        raise ValueError(f"build_model: unknown model {name!r}; choose from {list(MODELS)}")
    if loss not in LOSSES:
        raise ValueError(f"build_model: unknown loss {loss!r}; choose from {sorted(LOSSES)}")
    if extra_conv and not name.startswith("convnet"):
        raise ValueError(f"build_model: extra_conv applies to convnets, not {name!r}")
    try:
        c_in, height, width = (check_int("build_model", "input_shape", s, 1)
                               for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"build_model: input_shape must be (C, H, W), three positive integers; "
                         f"got {input_shape!r}") from None
    n_classes = check_int("build_model", "n_classes", n_classes, 2)
    shrink = 0 if name == "convnet-bn" else 4
    side_h, side_w = _conv_side(height, shrink), _conv_side(width, shrink)
    if name.startswith("convnet") and min(side_h, side_w) < 1:
        need = "4x4 (two 2x2 poolings)" if shrink == 0 else \
            "16x16 (two 5x5 convolutions and 2x2 poolings)"
        raise ValueError(f"build_model: {name} needs images of at least {need}; got "
                         f"{height}x{width}. Use 'linear' or 'mlp', or pad the images")
    n_in = c_in * height * width
    dtype = check_dtype(dtype)
    init_seq, layer_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(init_seq)
    layers = []
    if translate or tuple(scale) != (1.0, 1.0) or shear:
        layers.append(RandomAffine(rotate, (translate, translate), scale, shear))
    elif rotate:
        layers.append(RandomRotation(rotate))

    def fc(n_in, n_out):
        if dropout:
            layers.append(Dropout(dropout))
        layers.append(Linear(n_in, n_out, dtype=dtype, rng=rng))

    if name == "linear":
        layers.append(Flatten())
        fc(n_in, n_classes)
    elif name == "mlp":
        layers.append(Flatten())
        fc(n_in, 512)
        layers.append(Tanh())
        fc(512, n_classes)
    elif name == "convnet-bn":
        def conv_bn(c_in, c_out):
            layers.append(Conv2d(c_in, c_out, 3, padding=1, dtype=dtype, rng=rng))
            layers.append(BatchNorm2d(c_out, dtype=dtype))
            layers.append(ReLU())

        conv_bn(c_in, 32)
        conv_bn(32, 32)
        layers.append(MaxPool2d(2, 2))
        conv_bn(32, 64)
        conv_bn(64, 64)
        layers.append(MaxPool2d(2, 2))
        if extra_conv:
            conv_bn(64, 64)
        layers.append(Flatten())
        fc(64 * side_h * side_w, 256)
        layers.append(ReLU())
        fc(256, n_classes)
    else:
        max_variant = name == "convnet-max"
        act = ReLU if max_variant else Tanh

        def block(c_in):
            layers.append(Conv2d(c_in, 64, 5, dtype=dtype, rng=rng))
            layers.append(act())
            if max_variant:
                layers.append(MaxPool2d(2, 2))
            else:
                layers.append(LPPool2d(2, 2, 2))
                layers.append(SubtractiveNormalization(7, dtype=dtype))

        block(c_in)   # 32 -> 28 -> 14
        block(64)     # 14 -> 10 -> 5
        if extra_conv:
            layers.append(Conv2d(64, 64, 3, padding=1, dtype=dtype, rng=rng))
            layers.append(act())
        layers.append(Flatten())
        fc(64 * side_h * side_w, 128)
        layers.append(act())
        fc(128, n_classes)
    head = LOSSES[loss].head
    if head == "LogSoftmax":
        layers.append(LogSoftmax())
    elif head == "Tanh":
        layers.append(Tanh())
    model = Sequential(*layers)
    model.set_rng(np.random.default_rng(layer_seq))
    return model
