"""Containers."""
from .module import Module, module_from_config, register_module

__all__ = ["Sequential"]


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
        self.layers = list(modules)

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
        self.layers.append(module)
        self._flat = None
        self._fused_pairs = set()
        return self

    def forward(self, x):
        """Run the layers in order. A pair that has a fused form (a layer whose
        :meth:`~Module.forward_fused` accepts its predecessor, such as max pooling after
        tanh) runs as one; :meth:`backward` then runs the pair's fused backward."""
        layers = self.layers
        n = len(layers)
        fused = self._fused_pairs = set()
        i = 0
        while i < n:
            if i + 1 < n:
                y = layers[i + 1].forward_fused(layers[i], x)
                if y is not None:
                    fused.add(i)
                    x = y
                    i += 2
                    continue
            x = layers[i].forward(x)
            i += 1
        return x

    def backward(self, grad_out, need_input_grad=True):
        layers = self.layers
        fused = getattr(self, "_fused_pairs", ())
        g = grad_out
        i = len(layers) - 1
        while i >= 0:
            if i - 1 in fused and layers[i].fused_with(layers[i - 1]):
                g = layers[i].backward_fused(layers[i - 1], g,
                                             need_input_grad=need_input_grad or i > 1)
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
