"""The hot path of a layer: call the compiled kernels directly once a call has been validated.

``fastconv.functional`` validates every argument on every call. Inside a training loop a
layer sees the same shapes, dtype and parameter arrays step after step, and those checks cost
several microseconds per call: about a tenth of a batch-1 training step. So each layer keeps,
per direction, the :class:`Plan` of its last validated call, and calls the kernels itself
while a new call matches that plan in everything the kernels read or write:

- the layer's hyperparameters (its ``hyper_names``: kernel size, stride, padding, p, ...),
  compared by value; only immutable values (ints, floats, tuples of them) are trusted, so a
  list changed in place can never pass;
- the thread count, since a kernel's workspace and its split of the work depend on it;
- each array passed anew (x, grad_out, kept buffers, labels): an exact ndarray, C-contiguous,
  of the recorded shape and dtype;
- each parameter read and each gradient buffer written: the very object validation saw,
  still of its shape, dtype and contiguity, written ones still writeable;
- aliasing: no input or parameter shares bytes with a written buffer;
- any other state a layer names (``state``), compared by equality;
- content the kernels trust without checking: class labels are range-checked on every call
  (:class:`~fastconv.nn.NLLLoss`), and Conv2d reuses the im2col matrix of its forward pass
  only while the input's bytes are unchanged.

Why that is enough: a kernel's memory accesses are determined by the shapes, dtypes and
hyperparameters of its arguments and by the thread count; validation proved them consistent
for these exact values and objects, and the checks above prove nothing of that has changed
(an array's shape, strides, dtype and flags can be changed in place, so they are read again
on every call; its data pointer cannot). The results equal the validated call's bitwise,
because both run the same kernels on the same arguments. Anything else goes through the
validating functions, which either refuse the call with a clear error or build a new plan.
"""
from .._kernels._fastcheck import Plan, enabled, ready, set_enabled, tail_equal, writable_float
from .._threads import effective_n_threads

__all__ = ["Plan", "plan_if_nonempty", "ready", "tail_equal", "writable_float", "threads",
           "enabled", "set_enabled"]

threads = effective_n_threads


def plan_if_nonempty(layer, inputs, reads=(), writes=(), out_shape=(), state=None, args=None):
    """A :class:`Plan` of the call just validated, or None when a result or input is empty
    (kernels are never handed empty arrays without validation, which skips them)."""
    for a in inputs:
        if a.size == 0:
            return None
    size = 1
    for s in out_shape:
        size *= s
    if size == 0:
        return None
    return Plan(layer, threads(), inputs, reads, writes, out_shape, state, args)
