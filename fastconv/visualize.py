"""PNG pictures of what trained: convolution filters and a grid of inputs."""
import os

import numpy as np

__all__ = ["save_filters", "save_input_grid", "visualize_model"]


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


def _save(path, mosaic, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6 * mosaic.shape[0] / mosaic.shape[1] + 0.4))
    cmap = plt.get_cmap("gray").with_extremes(bad="#4060a0")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def save_filters(path, weight, title):
    """Save convolution weights (F, C, kh, kw) as a grid: one tile per (filter, channel),
    at most 64 channels per filter."""
    weight = np.asarray(weight)
    f, c, kh, kw = weight.shape
    c = min(c, 64)
    tiles = weight[:, :c].reshape(f * c, kh, kw)
    return _save(path, _tile(tiles, n_cols=c if c > 1 else int(np.ceil(np.sqrt(f)))), title)


def save_input_grid(path, x, n=64, title="training inputs"):
    """Save the first ``n`` images of an (N, C, H, W) batch (first channel) as a grid."""
    x = np.asarray(x)[:n, 0]
    return _save(path, _tile(x, n_cols=int(np.ceil(np.sqrt(len(x))))), title)


def visualize_model(model, folder, inputs=None):
    """Write ``filters_layer1.png``, ``filters_layer2.png`` (the first two convolutions) and
    ``inputs.png`` into ``folder``. Returns the paths written."""
    from .nn import Conv2d

    paths = []
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    for i, conv in enumerate(convs[:2]):
        paths.append(save_filters(os.path.join(folder, f"filters_layer{i + 1}.png"),
                                  conv.weight, f"convolution {i + 1} filters "
                                  f"{tuple(conv.weight.shape)}"))
    if inputs is not None:
        paths.append(save_input_grid(os.path.join(folder, "inputs.png"), inputs))
    return paths
