"""Fuzz the layers' fast path against their validated path (run by tests/test_layers.py).

Two copies of each module from ``tests/layer_cases.py`` run the same program of calls, one
with the fast path on, one with it off. Between calls hypothesis changes hyperparameters,
replaces or mutates arrays (x, grad_out, parameters, gradients), aliases gradients with
parameters or the input, changes shapes in place, dtypes, writeability, training mode and the
thread count, applying each change identically to both copies. Every call must then give
the same outcome on both: the same exception type, or bitwise-equal results, gradients,
parameters and buffers. A crash (segfault, abort) kills this process: the test that runs it
in a subprocess fails.

Run as ``python -m tests.fuzz_layers``. ``FASTCONV_FUZZ_EXAMPLES`` is the number of
examples per layer (default 30, the CI profile: 540 examples in all).
"""
import os
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastconv
from fastconv import nn
from fastconv.nn import _fastpath

from .layer_cases import CASES, HYPER, input_for, make

EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", "30"))
# A program is a list of steps (change, seed, call): apply the change to both copies, then
# make the call ("step" = forward then backward).
CHANGES = ["hyper", "hyper", "new_x", "mutate_x", "reshape_x", "readonly_x", "grad_out",
           "alias", "replace_param", "readonly_grad", "threads", "mode", "flat", "none"]
CALLS = ["forward", "backward", "step", "none"]


class Copy:
    """One copy of the module under test and the arrays it is called with."""

    def __init__(self, name, fast):
        self.m = make(name)
        self.fast = fast
        self.x = input_for(name, np.random.default_rng(1))
        self.g = None

    def call(self, fn):
        _fastpath.set_enabled(self.fast)
        try:
            return ("ok", fn())
        except Exception as exc:    # an error is a legitimate outcome, a crash is not
            return ("raised", type(exc).__name__)
        finally:
            _fastpath.set_enabled(True)


def _state(m):
    return [a.copy() for a in m.params() + m.grads() + m.buffers() if a is not None]


def _same(a, b):
    if a[0] != b[0]:
        return False
    if a[0] == "raised":
        return a[1] == b[1]
    u, v = a[1], b[1]
    if u is None or v is None:
        return u is None and v is None
    u, v = np.asarray(u), np.asarray(v)
    return u.shape == v.shape and u.dtype == v.dtype and np.array_equal(u, v, equal_nan=True)


def _new_x(x, r):
    kind = r.integers(8)
    shape = list(x.shape)
    if kind == 0:
        shape[0] = int(r.integers(1, 4))
    elif kind == 1 and len(shape) > 2:
        shape[-1] += 1
    new = r.standard_normal(shape)
    if kind == 2:
        return new.astype(np.float32 if x.dtype == np.float64 else np.float64)
    if kind == 3:
        return np.asfortranarray(new)
    if kind == 4:
        return np.concatenate([new, new], axis=-1)[..., ::2]
    if kind == 5:
        return new.astype(np.int64)
    if kind == 6 and new.ndim > 1:
        return new[0]
    return new.astype(x.dtype)


def _mutate(c, op, r):
    """Apply operation ``op`` to copy ``c``, drawing from generator ``r`` (the same seed for
    both copies, hence the same change)."""
    m = c.m
    if op == "hyper":
        layers = m.modules()
        layer = layers[r.integers(len(layers))]
        choices = HYPER.get(type(layer).__name__)
        if choices:
            attr = sorted(choices)[r.integers(len(choices))]
            value = choices[attr][r.integers(len(choices[attr]))]
            setattr(layer, attr, value.copy() if isinstance(value, np.ndarray) else value)
    elif op == "new_x":
        c.x = _new_x(c.x, r)
    elif op == "mutate_x" and c.x.flags.writeable:
        c.x[...] = r.standard_normal(c.x.shape)
    elif op == "reshape_x":
        try:
            c.x.shape = (c.x.shape[0], -1) if r.integers(2) else c.x.shape[::-1]
        except (AttributeError, ValueError, IndexError):
            pass
    elif op == "readonly_x" and c.x.ndim:
        c.x.flags.writeable = False
    elif op == "grad_out" and c.g is not None:
        kind = r.integers(4)
        if kind == 0:
            c.g = r.standard_normal(c.g.shape[:-1] + (c.g.shape[-1] + 1,))
        elif kind == 1:
            c.g = c.g.astype(np.float32 if c.g.dtype == np.float64 else np.float64)
        elif kind == 2:
            c.g = np.asfortranarray(c.g)
        else:
            c.g = c.g.T if c.g.ndim == 2 else c.g[::-1]
    elif op in ("alias", "replace_param", "readonly_grad"):
        slots = m._param_slots()
        if not slots:
            return
        owner, name = slots[r.integers(len(slots))]
        p, grad = getattr(owner, name), getattr(owner, "grad_" + name)
        if op == "alias":
            target = [p, c.x, grad][r.integers(3)]
            if target.size == p.size and r.integers(2):
                setattr(owner, "grad_" + name, target.reshape(p.shape))
            else:
                setattr(owner, "grad_" + name, p)
        elif op == "replace_param":
            kind = r.integers(4)
            new = r.standard_normal(p.shape)
            if kind == 0:
                new = new.astype(p.dtype)
            elif kind == 1:
                new = r.standard_normal(p.shape[:-1] + (p.shape[-1] + 1,)).astype(p.dtype)
            elif kind == 2:
                new = new.astype(np.float32 if p.dtype == np.float64 else np.float64)
            else:
                new = new.astype(p.dtype)
                new.flags.writeable = False
            setattr(owner, name, new)
        else:
            grad.flags.writeable = False
    elif op == "mode":
        m.train(not m.training)
    elif op == "flat":
        try:
            m.flat_parameters()
        except (TypeError, ValueError):
            pass


def run_program(name, program):
    fast, slow = Copy(name, True), Copy(name, False)
    # Two full steps first, so that every layer has its plans when the changes begin.
    program = [("none", 0, "step"), ("none", 0, "step")] + program
    ops = []
    for change, seed, call in program:
        ops.append((change, seed))
        ops += {"step": [("forward", seed), ("backward", seed)], "none": []}.get(
            call, [(call, seed)])
    for i, (op, seed) in enumerate(ops):
        # Hypothesis favours small seeds (0 above all); the position in the program makes
        # each operation's draws differ even then.
        seed = [seed, i]
        if op == "none":
            continue
        if op == "threads":
            fastconv.set_num_threads(int(np.random.default_rng(seed).integers(1, 4)))
            continue
        if op in ("forward", "backward"):
            outcomes = []
            for c in (fast, slow):
                c.m.set_rng(np.random.default_rng(seed))
                if op == "forward":
                    out = c.call(lambda: c.m.forward(c.x))
                    if out[0] == "ok":
                        c.g = np.random.default_rng(seed).standard_normal(
                            out[1].shape).astype(out[1].dtype)
                        out = ("ok", out[1].copy())
                else:
                    out = c.call(lambda: c.m.backward(c.g if c.g is not None else c.x))
                    if out[0] == "ok" and out[1] is not None:
                        out = ("ok", np.array(out[1]))
                outcomes.append(out)
            assert _same(*outcomes), f"{name} {op}: fast {outcomes[0]} != validated " \
                                     f"{outcomes[1]} after {program}"
            for a, b in zip(_state(fast.m), _state(slow.m)):
                assert _same(("ok", a), ("ok", b)), f"{name}: state differs after {program}"
        else:
            for c in (fast, slow):
                _mutate(c, op, np.random.default_rng(seed))


def run_nll_program(program):
    """NLLLoss: labels changed, shapes changed in place, between forward and backward."""
    ops = [("forward", 0), ("backward", 0), ("forward", 0), ("backward", 0)]
    for change, seed, call in program:
        ops.append((change, seed))
        ops += {"step": [("forward", seed), ("backward", seed)], "none": []}.get(
            call, [(call, seed)])
    program = ops
    copies = []
    for fast in (True, False):
        lp = np.log(np.full((6, 5), 0.2))
        copies.append({"fast": fast, "L": nn.NLLLoss(), "lp": lp, "t": np.zeros(6, np.intp)})
    for i, (op, seed) in enumerate(program):
        seed = [seed, i]
        outcomes = []
        for c in copies:
            r = np.random.default_rng(seed)
            _fastpath.set_enabled(c["fast"])
            try:
                if op in ("forward", "hyper", "new_x"):
                    outcomes.append(("ok", c["L"].forward(c["lp"], c["t"])))
                elif op == "backward":
                    outcomes.append(("ok", c["L"].backward(float(r.uniform(0.5, 2)))))
                elif op == "mutate_x":
                    c["t"][r.integers(6)] = [10, -1, 10**12, 3][r.integers(4)]
                elif op == "reshape_x":
                    c["lp"].shape = (10, 3)
                elif op == "grad_out":
                    c["t"] = c["t"].astype(np.int32)
                elif op == "threads":
                    fastconv.set_num_threads(int(r.integers(1, 4)))
            except Exception as exc:
                outcomes.append(("raised", type(exc).__name__))
            finally:
                _fastpath.set_enabled(True)
        if len(outcomes) == 2:
            assert _same(*outcomes), f"NLLLoss {op}: {outcomes} after {program}"


_BIG = [2**k + d for k in (20, 29, 30, 31) for d in (-1, 0, 1)]
extents = st.one_of(st.integers(0, 4), st.sampled_from(_BIG))


def _conv_reference(x, weight, sh, sw, ph, pw, oh, ow):
    """The convolution's definition at each output, with Python-int indices."""
    c, h, w = x.shape[1:]
    kh, kw = weight.shape[2:]
    y = np.zeros((1, weight.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                for v in range(kw):
                    a, b = i * sh + u - ph, j * sw + v - pw
                    if 0 <= a < h and 0 <= b < w:
                        y[0, :, i, j] += weight[:, :, u, v] @ x[0, :, a, b]
    return y


def run_geometry(h, k, stride, padding):
    """Strides and paddings near 2**20..2**31 through the validated functions: a clear
    error, or the definition's result (never an overflowed index or a crash)."""
    from fastconv import functional as F
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, h, h + 1))
    weight = rng.standard_normal((3, 2, k, k))
    sh, sw = max(stride, 1), max(stride // 2, 1)
    ph, pw = padding, padding // 3
    oh = (h + 2 * ph - k) // sh + 1 if h + 2 * ph >= k else 0
    ow = (h + 1 + 2 * pw - k) // sw + 1 if h + 1 + 2 * pw >= k else 0
    if oh * ow > 64:
        return          # too large for the reference (the kernels' own tests cover sizes)
    try:
        y = F.conv2d_forward(x, weight, None, (sh, sw), (ph, pw))
    except (ValueError, MemoryError):
        return
    np.testing.assert_allclose(y, _conv_reference(x, weight, sh, sw, ph, pw, oh, ow),
                               rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx, gw, _ = F.conv2d_backward(x, weight, g, (sh, sw), (ph, pw))
    eps = 1e-6
    for _ in range(3):   # directional derivatives of <y, g>, exact for a linear map
        d = rng.standard_normal(x.shape)
        yd = F.conv2d_forward(x + eps * d, weight, None, (sh, sw), (ph, pw))
        np.testing.assert_allclose(np.vdot(yd - y, g) / eps, np.vdot(gx, d), rtol=1e-5,
                                   atol=1e-8)
    for pool in (F.max_pool2d_forward, F.avg_pool2d_forward):
        try:
            pool(x, min(k, h), (sh, sw))
        except ValueError:
            pass


programs = st.lists(st.tuples(st.sampled_from(CHANGES), st.integers(0, 2**32 - 1),
                              st.sampled_from(CALLS)), min_size=1, max_size=8)
# The CI profile is derandomized (the same programs every run, no flaky CI); a count given
# in FASTCONV_FUZZ_EXAMPLES draws new programs each run.
config = settings(max_examples=EXAMPLES, deadline=None, database=None,
                  derandomize="FASTCONV_FUZZ_EXAMPLES" not in os.environ,
                  suppress_health_check=list(HealthCheck))


def main():
    old = fastconv.get_num_threads()
    try:
        for name in sorted(CASES):
            given(programs)(config(lambda program: run_program(name, program)))()
            print(f"{name}: {EXAMPLES} examples", flush=True)
        given(programs)(config(run_nll_program))()
        print(f"NLLLoss: {EXAMPLES} examples", flush=True)
        given(st.integers(1, 5), st.integers(1, 3), extents, extents)(
            config(run_geometry))()
        print(f"conv2d geometry: {EXAMPLES} examples", flush=True)
    finally:
        fastconv.set_num_threads(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
