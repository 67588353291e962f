"""Containers."""
from .module import Module, input_error, module_from_config, register_module

__all__ = ["Sequential"]


def _positions(module, where):
    """``(position, module)`` for ``module`` and its descendants: ``"2"``, ``"2[0]"``..."""
    yield where, module
    for i, child in enumerate(module.children()):
        yield from _positions(child, f"{where}[{i}]")


def _check_used_once(layers, caller):
    """Refuse a module that appears twice in ``layers`` (or inside them).

    A module keeps its last input for ``backward`` and accumulates into its own gradients,
    so a second use would overwrite the first's input and, through ``flat_parameters``,
    count its parameters twice: the gradients would be wrong. Shared weights need two
    modules and a tie the optimizer knows of, which fastconv does not have.
    """
    seen = {}
    for i, layer in enumerate(layers):
        for where, m in _positions(layer, str(i)):
            if id(m) in seen:
                raise ValueError(f"{caller}: the same {type(m).__name__} is at positions "
                                 f"{seen[id(m)]} and {where}; a module can be used once (it "
                                 f"keeps its input for backward). Use a separate module for "
                                 f"each position (copy.deepcopy(module) for the same "
                                 f"initial weights)")
            seen[id(m)] = where


@register_module
class Sequential(Module):
    """Chain of modules; backward walks them in reverse, each using its own cached input.

    Printed like Torch7: ``[input -> (1) -> (2) -> output]`` followed by the children.
    """

    def __init__(self, *modules):
        super().__init__()
        for m in modules:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: children must be Modules; got {type(m).__name__}")
        _check_used_once(modules, "Sequential")
        self.layers = list(modules)
        self._fused = None

    def children(self):
        return self.layers

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def add(self, module):
        """Append ``module`` to the chain; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.add: expected a Module; got {type(module).__name__}")
        if any(m is self for m in module.modules()):
            raise ValueError("Sequential.add: a Sequential cannot contain itself")
        _check_used_once(self.layers + [module], "Sequential.add")
        self.layers.append(module)
        self._flat = None
        self._fused = None
        return self

    @staticmethod
    def _fusable(act, pool):
        """A monotonic elementwise activation followed by a layer that commutes with it
        (max pooling): run as pool, then the activation in place on the pooled values."""
        return (getattr(act, "monotonic", False) and hasattr(act, "forward_inplace")
                and getattr(pool, "commutes_with_monotonic", False))

    def forward(self, x):
        """Run the layers in order.

        A monotonic activation followed by max pooling runs as pooling first, then the
        activation in place on the pooled values: equal, because the activation preserves
        order, and it touches a quarter of the elements (2x2 pooling) and never stores its
        full-size output. Its backward then applies the activation's derivative to the
        pooled gradient only (:meth:`backward`). One difference remains: when the activation
        rounds two different inputs of one window to the same value, the layer-by-layer
        pair sends the gradient to the first of them and the fused pair to the larger input;
        the gradient's value is the same.
        """
        layers = self.layers
        n = len(layers)
        fused = self._fused = {}    # index of the activation -> its pooled output
        i = at = 0                  # at: the layer being called, x: its input
        try:
            while i < n:
                if i + 1 < n and self._fusable(layers[i], layers[i + 1]):
                    at = i + 1
                    y = layers[i + 1].forward(x)
                    at, x = i, y
                    fused[i] = layers[i].forward_inplace(y)
                    i += 2
                    continue
                at = i
                x = layers[i].forward(x)
                i += 1
        except (TypeError, ValueError) as exc:
            # A layer's error names the layer, its place and the fix (see input_error).
            raise input_error(exc, layers[at], x, at) from None
        return x

    def fused_pairs(self):
        """Indices of the activations that the last :meth:`forward` ran fused with the max
        pooling after them (pairs ``(i, i + 1)``)."""
        return sorted(self._fused or ())

    def backward(self, grad_out, need_input_grad=True):
        layers = self.layers
        fused = self._fused or {}
        g = grad_out
        i = len(layers) - 1
        while i >= 0:
            # A fused pair, unless its activation ran on its own since.
            if i - 1 in fused and layers[i - 1].inplace_last:
                g = layers[i - 1].backward_from_output(fused[i - 1], g)
                g = layers[i].backward(g, need_input_grad=need_input_grad or i > 1)
                i -= 2
            else:
                g = layers[i].backward(g, need_input_grad=need_input_grad or i > 0)
                i -= 1
        return g

    def config(self):
        return {"type": "Sequential", "layers": [m.config() for m in self.layers]}

    @classmethod
    def from_config(cls, config):
        return cls(*[module_from_config(c) for c in config["layers"]])

    def __repr__(self):
        arrow = " -> ".join(["[input"] + [f"({i + 1})" for i in range(len(self.layers))]
                            + ["output]"])
        lines = [f"Sequential {arrow}"]
        for i, m in enumerate(self.layers):
            lines.append(f"  ({i + 1}): " + repr(m).replace("\n", "\n  "))
        return "\n".join(lines)
