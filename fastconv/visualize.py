"""Figures of what trained: convolution filters and a grid of inputs.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``: nothing
here selects a backend or registers figures with ``pyplot``, so a notebook or application
keeps its own settings. Show a figure in a notebook by leaving it as a cell's value, or save
it with ``fig.savefig("filters.png")``.
"""
import numpy as np

__all__ = ["filters_figure", "inputs_figure", "visualize_model"]

_BAD = "#4060a0"     # padding between tiles


def _tile(images, n_cols, pad=1):
    """Arrange (K, h, w) images into one 2-D mosaic, each tile scaled to [0, 1]."""
    k, h, w = images.shape
    n_rows = int(np.ceil(k / n_cols))
    mosaic = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad), np.nan)
    for i in range(k):
        img = images[i].astype(np.float64)
        lo, hi = np.nanmin(img), np.nanmax(img)
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        r, c = divmod(i, n_cols)
        mosaic[pad + r * (h + pad):pad + r * (h + pad) + h,
               pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return mosaic


def _new_figure(width, height):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout="constrained")


def _show_mosaic(ax, mosaic, title):
    from matplotlib import colormaps

    cmap = colormaps["gray"].with_extremes(bad=_BAD)
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")


def filters_figure(weight, title=None, n_strongest=16):
    """Picture convolution weights in a readable form.

    A first layer (one input channel) is shown whole: one tile per filter. A deeper layer
    has ``F x C`` kernels (4,096 for 64 -> 64), too many to read as tiles, so it is shown as
    a per-filter summary: a heat map of every kernel's L2 norm (which input channels each
    filter listens to), beside the ``n_strongest`` filters' strongest kernels.

    Parameters
    ----------
    weight : ndarray, shape (F, C, kh, kw)
    title : str, optional
    n_strongest : int
        How many kernels to draw for a deeper layer.

    Returns
    -------
    matplotlib.figure.Figure
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"filters_figure: weight must be 4-D (F, C, kh, kw); got shape "
                         f"{weight.shape}")
    f, c, kh, kw = weight.shape
    title = title or f"convolution filters {weight.shape}"
    if c == 1:
        n_cols = int(np.ceil(np.sqrt(f)))
        fig = _new_figure(6, 6 * int(np.ceil(f / n_cols)) / n_cols + 0.5)
        _show_mosaic(fig.add_subplot(), _tile(weight[:, 0], n_cols), title)
        return fig
    norms = np.sqrt((weight ** 2).sum(axis=(2, 3)))            # (F, C)
    strongest = np.argsort(norms.max(axis=1))[::-1][:n_strongest]
    channels = norms[strongest].argmax(axis=1)
    fig = _new_figure(11, 5)
    fig.suptitle(title)
    heat, tiles = fig.subplots(1, 2, width_ratios=[1.2, 1])
    image = heat.imshow(norms, aspect="auto", cmap="viridis", interpolation="nearest")
    heat.set_xlabel("input channel")
    heat.set_ylabel("filter")
    heat.set_title("L2 norm of each kernel")
    fig.colorbar(image, ax=heat)
    n_cols = int(np.ceil(np.sqrt(len(strongest))))
    _show_mosaic(tiles, _tile(weight[strongest, channels], n_cols),
                 f"{len(strongest)} strongest filters (filter:channel)")
    for i, (k, ch) in enumerate(zip(strongest, channels)):
        r, col = divmod(i, n_cols)
        tiles.text(1 + col * (kw + 1), 1 + r * (kh + 1), f"{k}:{ch}", color="yellow",
                   fontsize=6, va="top", bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5,
                                              "linewidth": 0})
    return fig


def inputs_figure(x, n=64, title="training inputs"):
    """The first ``n`` images of an (N, C, H, W) batch (first channel) as a grid.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    n : int
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"inputs_figure: x must be a non-empty (N, C, H, W) batch; got shape "
                         f"{x.shape}")
    x = x[:n, 0]
    n_cols = int(np.ceil(np.sqrt(len(x))))
    fig = _new_figure(6, 6 * int(np.ceil(len(x) / n_cols)) / n_cols + 0.5)
    _show_mosaic(fig.add_subplot(), _tile(x, n_cols), title)
    return fig


def visualize_model(model, inputs=None):
    """Figures of a model's first two convolutions and, optionally, of its inputs.

    Parameters
    ----------
    model : fastconv.nn.Module
    inputs : ndarray, shape (N, C, H, W), optional

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        ``filters_layer1``, ``filters_layer2`` (as many as the model has convolutions, up
        to two) and ``inputs`` (when given).
    """
    from .nn import Conv2d

    figures = {}
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    for i, conv in enumerate(convs[:2]):
        figures[f"filters_layer{i + 1}"] = filters_figure(
            conv.weight, f"convolution {i + 1} filters {tuple(conv.weight.shape)}")
    if inputs is not None:
        figures["inputs"] = inputs_figure(inputs)
    return figures
