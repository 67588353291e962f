"""The layer protocol shared by every fastconv module.

A module separates Torch7's three verbs: ``forward(x)`` computes and caches what backward needs;
``backward(grad_out)`` returns the gradient with respect to the input and *accumulates* (``+=``)
the gradients of its parameters; ``zero_grad()`` resets them. Parameters and gradients can be
gathered into one contiguous vector each (:meth:`Module.flat_parameters`, Torch's
``getParameters``), which is what the optimizers update in place.
"""
import numpy as np

from .._kernels import _vector
from .._threads import effective_n_threads
from .._validation import FLOAT_DTYPES, check_dtype
from ._buffers import BufferPool

__all__ = ["Module", "register_module", "module_from_config", "input_error"]

_REGISTRY = {}


def register_module(cls):
    """Class decorator: make ``cls`` constructible from its :meth:`Module.config`."""
    _REGISTRY[cls.__name__] = cls
    return cls


def module_from_config(config):
    """Rebuild a module (parameters freshly initialized) from :meth:`Module.config`."""
    try:
        cls = _REGISTRY[config["type"]]
    except KeyError:
        raise ValueError(f"unknown module type {config.get('type')!r}; known: "
                         f"{sorted(_REGISTRY)}") from None
    return cls.from_config(config)


class Module:
    """Base class of layers and containers.

    Subclasses list their parameter attribute names in ``param_names`` (e.g.
    ``("weight", "bias")``); each parameter ``p`` has a same-shaped gradient attribute
    ``grad_p``. State that is not trained but belongs to the model (BatchNorm's running
    statistics) is listed in ``buffer_names``: model files and checkpoints save and restore
    it, and :meth:`astype` converts it. Randomized layers set ``stochastic = True`` and draw
    from ``self.rng``; layers whose training output for one sample depends on the other
    samples of the batch (batch normalization) set ``batch_dependent = True``.
    """

    param_names = ()
    buffer_names = ()
    stochastic = False
    batch_dependent = False
    # Attributes that parametrize the kernels (kernel size, stride, ...): a fast-path Plan
    # records them, and a call after any of them changed goes through validation again.
    hyper_names = ()

    def __init__(self):
        self.training = True
        self.rng = None
        self._flat = None
        self._pool = BufferPool()

    # -- the three verbs ----------------------------------------------------------------
    def forward(self, x):
        """Compute the output for ``x`` and cache what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad=True):
        """Return dL/dx for the last ``forward`` and accumulate parameter gradients.

        Parameters
        ----------
        grad_out : ndarray
            dL/dy, shaped like the last output.
        need_input_grad : bool
            False lets a layer skip computing dL/dx (the first layer of a network);
            it then returns None.
        """
        raise NotImplementedError

    def __call__(self, x):
        try:
            return self.forward(x)
        except (TypeError, ValueError) as exc:
            raise input_error(exc, self, x) from None

    # What the inputs must be, for the fix an error names (see input_error): the number of
    # axes (None: any), and the attribute holding the size of axis 1 (channels or features).
    input_ndim = None
    size_argument = None

    def _saved(self, value):
        """``value`` (something forward cached), or a clear error when there is none."""
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first "
                               f"(nothing saved from a forward pass)")
        return value

    def _empty(self, shape, dtype):
        """``np.empty(shape, dtype)`` for a result of this layer.

        In training mode the array comes from the layer's :class:`~fastconv.nn._buffers.
        BufferPool`: a training loop repeats the same shapes every step, and recycling the
        arrays nobody holds any more spares the allocator's page faults. Evaluation passes
        allocate plainly, so that a large inference batch is not kept alive afterwards.
        """
        if self.training:
            return self._pool.empty(shape, dtype)
        return np.empty(shape, dtype=dtype)

    # -- structure ----------------------------------------------------------------------
    def children(self):
        """The direct sub-modules (empty for a layer)."""
        return []

    def modules(self):
        """This module and all its descendants, depth first (a list)."""
        # A list built by an explicit stack: zero_grad walks the tree every step, and
        # nested generators cost several times more.
        out, stack = [], [self]
        while stack:
            m = stack.pop()
            out.append(m)
            stack.extend(reversed(m.children()))
        return out

    def _param_slots(self):
        slots = []
        for m in self.modules():
            for name in m.param_names:
                value = getattr(m, name, None)
                if value is not None:
                    if not isinstance(value, np.ndarray):
                        m._check_params()
                    slots.append((m, name))
        return slots

    def _check_params(self):
        """Refuse a parameter or gradient attribute that is not an array (a list assigned
        to ``weight``): every kernel call and the flat vector need arrays."""
        for name in self.param_names:
            for attr in (name, "grad_" + name):
                value = getattr(self, attr, None)
                if value is not None and not isinstance(value, np.ndarray):
                    raise TypeError(f"{type(self).__name__}.{attr} must be a numpy array; got "
                                    f"{type(value).__name__} (assign np.asarray(value, "
                                    f"dtype=np.float32 or np.float64) of the same shape)")

    def depends_on_batch(self):
        """True if, in training mode, one sample's output depends on the other samples of
        its batch (a :class:`BatchNorm2d` somewhere): such a batch cannot be split into
        chunks without changing the result."""
        return any(m.batch_dependent for m in self.modules())

    def params(self):
        """List of parameter arrays, in a fixed order."""
        return [getattr(m, name) for m, name in self._param_slots()]

    def grads(self):
        """List of gradient arrays, in the order of :meth:`params`."""
        return [getattr(m, "grad_" + name) for m, name in self._param_slots()]

    def buffers(self):
        """List of non-parameter state arrays (``buffer_names`` of every descendant), in a
        fixed order: what model files and checkpoints save besides the parameters."""
        return [getattr(m, name) for m in self.modules() for name in m.buffer_names]

    def load_buffers(self, arrays, source="load_buffers"):
        """Copy ``arrays`` (in :meth:`buffers` order) into the buffers, in place.

        Raises ValueError, naming ``source``, when the count or a shape differs."""
        slots = [(m, name) for m in self.modules() for name in m.buffer_names]
        arrays = list(arrays)
        if len(arrays) != len(slots):
            raise ValueError(f"{source}: {len(arrays)} buffer arrays given; the model has "
                             f"{len(slots)}")
        for (m, name), value in zip(slots, arrays):
            current = getattr(m, name)
            if np.shape(value) != current.shape:
                raise ValueError(f"{source}: {type(m).__name__}.{name} needs shape "
                                 f"{current.shape}; got {np.shape(value)}")
            current[...] = value

    def zero_grad(self):
        """Set every parameter gradient to zero (``backward`` accumulates into them)."""
        if self._flat is not None and self._flat_intact():
            # One pass over the flat vector, split between fastconv's threads.
            _vector.zero(self._flat[1], effective_n_threads())
            return
        for g in self.grads():
            g.fill(0)

    def train(self, mode=True):
        """Switch this module and its descendants to training (or evaluation) mode."""
        for m in self.modules():
            m.training = bool(mode)
            pool = getattr(m, "_pool", None)
            if not mode and pool is not None:
                pool.clear()    # evaluation does not recycle; let the memory go
        return self

    def eval(self):
        """Switch to evaluation mode (stochastic layers become the identity); returns self."""
        return self.train(False)

    def set_rng(self, rng):
        """Give every stochastic descendant the generator ``rng`` (shared, so that a
        checkpoint holds a single generator state)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"set_rng: rng must be a numpy.random.Generator; "
                            f"got {type(rng).__name__}")
        for m in self.modules():
            if m.stochastic:
                m.rng = rng
        return self

    @property
    def dtype(self):
        """The parameters' dtype, or None for a module without parameters."""
        ps = self.params()
        return ps[0].dtype if ps else None

    def astype(self, dtype):
        """Convert parameters and gradients to ``dtype`` in place; returns self."""
        dtype = check_dtype(dtype, "astype")
        for m, name in self._param_slots():
            setattr(m, name, np.ascontiguousarray(getattr(m, name), dtype=dtype))
            setattr(m, "grad_" + name, np.zeros_like(getattr(m, name)))
        for m in self.modules():
            m._flat = None
            for name in m.buffer_names:
                setattr(m, name, np.ascontiguousarray(getattr(m, name), dtype=dtype))
            m._astype_buffers(dtype)
        return self

    def _astype_buffers(self, dtype):
        """Hook for other non-parameter arrays (e.g. fixed kernels) to follow the dtype."""

    def flat_parameters(self):
        """Gather parameters and gradients into one contiguous vector each.

        After the call every parameter (and gradient) attribute is a view into the returned
        vectors, so updating ``flat_params`` in place updates the model, and ``backward``
        accumulates into ``flat_grads``. Calling it again returns the same vectors.

        Returns
        -------
        flat_params, flat_grads : ndarray, shape (n_params,)
        """
        if self._flat is not None and self._flat_intact():
            return self._flat
        slots = list(self._param_slots())
        if not slots:
            raise ValueError("flat_parameters: the module has no parameters")
        dtypes = {getattr(m, n).dtype for m, n in slots}
        if len(dtypes) != 1:
            raise TypeError(f"flat_parameters: parameters mix dtypes {sorted(map(str, dtypes))}; "
                            f"call astype() first")
        dtype = dtypes.pop()
        total = sum(getattr(m, n).size for m, n in slots)
        flat_p = np.empty(total, dtype=dtype)
        flat_g = np.empty(total, dtype=dtype)
        offset = 0
        for m, name in slots:
            p, g = getattr(m, name), getattr(m, "grad_" + name)
            size = p.size
            flat_p[offset:offset + size] = p.reshape(-1)
            flat_g[offset:offset + size] = g.reshape(-1)
            setattr(m, name, flat_p[offset:offset + size].reshape(p.shape))
            setattr(m, "grad_" + name, flat_g[offset:offset + size].reshape(p.shape))
            offset += size
        self._flat = (flat_p, flat_g)
        return self._flat

    def _flat_intact(self):
        flat_p, flat_g = self._flat
        for m, n in self._param_slots():
            if getattr(m, n).base is not flat_p or getattr(m, "grad_" + n).base is not flat_g:
                return False
        return True

    def n_parameters(self):
        """Total number of parameter entries (weights and biases)."""
        return int(sum(p.size for p in self.params()))

    def summary(self, input_shape=None):
        """Layer-by-layer table: type and settings, output shape, parameter count, totals.

        Parameters
        ----------
        input_shape : tuple of int, optional
            Shape of one input sample, e.g. ``(1, 32, 32)``. When given, the model is run
            once in evaluation mode on one zero sample (replacing what the layers cached
            for ``backward``) to find each layer's output shape.

        Returns
        -------
        fastconv.nn.Summary
            Prints as a table; ``rows`` holds the numbers.

        Examples
        --------
        >>> from fastconv import nn
        >>> print(nn.build_model("linear").summary((1, 32, 32)))  # doctest: +SKIP
        """
        from ._summary import summarize
        return summarize(self, input_shape)

    # -- description and serialization ---------------------------------------------------
    def get_config(self):
        """Constructor arguments (JSON-able) that rebuild this module's architecture."""
        return {}

    def config(self):
        """``{"type": class name, **get_config()}``: JSON-able, rebuilt by
        :func:`module_from_config`."""
        return {"type": type(self).__name__, **self.get_config()}

    @classmethod
    def array_shapes(cls, settings):
        """What :meth:`from_config` would allocate for ``settings``, without allocating it.

        :func:`fastconv.serialization.load_model` checks a file's declared architecture
        against its stored arrays (and a memory budget) with this before building anything,
        so that a tiny file cannot declare a layer of 10^12 weights. Layers that allocate
        parameters, buffers or other arrays from their settings override it;
        ``tests/test_layers.py`` checks it against a built module for every registered type.

        Parameters
        ----------
        settings : dict
            The layer's :meth:`get_config` (without ``"type"``), as read from a file.

        Returns
        -------
        params : list of tuple
            Shapes of the parameters, in :meth:`params` order.
        buffers : list of tuple
            Shapes of the buffers, in :meth:`buffers` order.
        other : int
            Elements of any other array built from the settings.

        Raises
        ------
        TypeError, ValueError
            A setting the constructor would refuse.
        """
        return [], [], 0

    @classmethod
    def from_config(cls, config):
        """Build a module (freshly initialized parameters) from :meth:`config`'s output."""
        kwargs = {k: v for k, v in config.items() if k != "type"}
        return cls(**kwargs)

    def extra_repr(self):
        """The settings shown inside the module's repr, e.g. ``kernel_size=(5, 5)``."""
        return ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}"
                         for k, v in self.get_config().items() if not isinstance(v, dict))

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def _input_fix(layer, x):
    """How to fix ``x`` for ``layer`` (one phrase), or None when nothing specific applies."""
    if not isinstance(x, np.ndarray):
        return "pass a numpy.ndarray"
    dtype = layer.dtype
    if x.dtype not in FLOAT_DTYPES:
        to = np.dtype(dtype or np.float32).name
        return f"convert the input to floats, e.g. x.astype(np.{to})"
    if dtype is not None and x.dtype != dtype:
        return (f"give the input and every layer one dtype: build the layers with "
                f"dtype=np.{x.dtype.name}, or convert the input with "
                f"x.astype(np.{dtype.name}) (or the model with model.astype(np.{x.dtype.name}))")
    ndim, arg = layer.input_ndim, layer.size_argument
    if ndim == 2 and x.ndim > 2:
        flat = int(np.prod(x.shape[1:]))
        then = f" and give it {arg}={flat}" if arg else ""
        return (f"put nn.Flatten() before this layer (it turns {x.shape} into "
                f"({x.shape[0]}, {flat})){then}")
    if ndim == 4 and x.ndim != 4:
        return ("this layer takes image batches (N, C, H, W): place it before Flatten, or "
                "reshape the input, e.g. x.reshape(N, 1, H, W) for one channel")
    if arg is not None and x.ndim == ndim and x.shape[1] != getattr(layer, arg):
        return (f"build it with {arg}={x.shape[1]} to match its input, or make the layer "
                f"before it give {getattr(layer, arg)}")
    return None


def input_error(exc, layer, x, index=None):
    """``exc`` (a TypeError or ValueError raised by ``layer`` on input ``x``) as the same type
    of error naming the layer, and its index in a Sequential, with the fix.

    One mechanism for every layer: :meth:`Module.__call__` and :class:`Sequential` route a
    layer's error through it. An error already routed (from a nested Sequential) only gains
    the outer index.

    Parameters
    ----------
    exc : TypeError or ValueError
    layer : Module
    x : object
        The input the layer refused.
    index : int, optional
        The layer's position (0-based) in its Sequential.

    Returns
    -------
    Exception
        To raise.
    """
    name = type(layer).__name__
    where = name if index is None else f"layer ({index + 1}) {name}"
    inner = getattr(exc, "layer_path", None)
    if inner is not None:
        if index is None:
            return exc
        path, detail = f"{where}, {inner}", exc.layer_detail
    else:
        detail = str(exc)
        if detail.startswith(name + ": "):
            detail = detail[len(name) + 2:]
        fix = _input_fix(layer, x)
        # Conv2d and Linear name the dtype fix themselves (also when called directly).
        if fix and not ("astype(" in fix and "astype(" in detail):
            detail = f"{detail}; fix: {fix}"
        path = where
    message = f"Sequential {path}: {detail}" if index is not None else f"{path}: {detail}"
    try:
        new = type(exc)(message)
    except Exception:       # an error type that takes other arguments: keep it as it is
        return exc
    new.layer_path, new.layer_detail = path, detail
    return new.with_traceback(exc.__traceback__)
