"""``Module.summary()``: a layer-by-layer table, as Keras' ``model.summary()`` and torchinfo.

Output shapes are found by running the model once, in evaluation mode, on a zero batch of
one sample of the given shape: every layer then reports the shape it really produces, with
no shape formula to keep in step with the kernels.
"""
import numpy as np

from .module import input_error

__all__ = ["Summary", "summarize"]


class Summary:
    """A model's layers with their settings, output shapes and parameter counts.

    Attributes
    ----------
    rows : list of dict
        One per layer (containers are expanded): ``index`` (e.g. ``"3"`` or ``"2.1"``),
        ``type``, ``settings``, ``output_shape`` (a tuple starting with the batch axis, or
        None without an input shape) and ``n_parameters``.
    input_shape : tuple of int or None
        Shape of one sample.
    n_parameters : int
        Total number of parameters.
    dtype : numpy.dtype or None
        The parameters' dtype.
    """

    def __init__(self, rows, input_shape, n_parameters, dtype):
        self.rows = rows
        self.input_shape = input_shape
        self.n_parameters = n_parameters
        self.dtype = dtype

    def __str__(self):
        header = ("#", "layer", "output shape", "parameters")
        body = [(r["index"], f"{r['type']}({r['settings']})",
                 "?" if r["output_shape"] is None else str(r["output_shape"]),
                 f"{r['n_parameters']:,}") for r in self.rows]
        widths = [max(len(row[i]) for row in [header] + body) for i in range(4)]

        def line(row):
            return (f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  "
                    f"{row[3]:>{widths[3]}}")

        rule = "-" * len(line(header))
        size = self.n_parameters * (self.dtype.itemsize if self.dtype is not None else 0)
        lines = [rule, line(header), rule] + [line(r) for r in body] + [rule]
        if self.input_shape is not None:
            lines.append(f"input shape: {(1,) + self.input_shape}")
        lines.append(f"total parameters: {self.n_parameters:,} "
                     f"({self.dtype if self.dtype is not None else 'no'} parameters, "
                     f"{size / 2 ** 20:.2f} MiB)")
        return "\n".join(lines)

    __repr__ = __str__


def _pair(v):
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def _settings(layer):
    """A layer's settings, short enough for one table column (the repr has them in full)."""
    config = layer.get_config()
    kind = type(layer).__name__
    bias = "" if config.get("bias", True) else ", no bias"
    if kind == "Conv2d":
        return (f"{config['in_channels']}->{config['out_channels']}, kernel "
                f"{'x'.join(map(str, config['kernel_size']))}, stride "
                f"{_pair(config['stride'])}, padding {_pair(config['padding'])}{bias}")
    if kind == "Linear":
        return f"{config['in_features']}->{config['out_features']}{bias}"
    if "kernel_size" in config and isinstance(config["kernel_size"], list):
        parts = [f"p={config['p']:g}"] if "p" in config else []
        parts.append(f"kernel {'x'.join(map(str, config['kernel_size']))}")
        parts.append(f"stride {_pair(config['stride'])}")
        return ", ".join(parts)
    return layer.extra_repr()


def _leaves(module, prefix=""):
    """(index, module) for every non-container layer, depth first."""
    children = module.children()
    if not children:
        return [(prefix or "1", module)]
    out = []
    for i, child in enumerate(children):
        index = f"{prefix}.{i + 1}" if prefix else str(i + 1)
        out.extend(_leaves(child, index) if child.children() else [(index, child)])
    return out


def summarize(model, input_shape=None):
    """Build the :class:`Summary` of ``model`` (see :meth:`fastconv.nn.Module.summary`)."""
    leaves = _leaves(model)
    shapes = [None] * len(leaves)
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        dtype = model.dtype or np.float32
        modules = model.modules()
        modes = [m.training for m in modules]
        # Evaluation mode without Module.eval(): that would also empty the layers' buffer
        # pools, a cost the training run that asked for a summary would pay again.
        for m in modules:
            m.training = False
        try:
            x = np.zeros((1,) + input_shape, dtype=dtype)
            for i, (index, layer) in enumerate(leaves):
                try:
                    x = layer.forward(x)
                except (TypeError, ValueError) as exc:
                    # The layer's message with its fix, as a Sequential reports it.
                    detail = getattr(input_error(exc, layer, x), "layer_detail", exc)
                    raise ValueError(f"summary: layer {index} ({type(layer).__name__}) cannot "
                                     f"take the output of the layer before it, shape "
                                     f"{x.shape}: {detail}") from None
                shapes[i] = tuple(x.shape)
        finally:
            for m, mode in zip(modules, modes):
                m.training = mode
    rows = [{"index": index, "type": type(layer).__name__, "settings": _settings(layer),
             "output_shape": shape, "n_parameters": layer.n_parameters()}
            for (index, layer), shape in zip(leaves, shapes)]
    return Summary(rows, input_shape, model.n_parameters(), model.dtype)
