"""Central finite differences and the dot-product (adjoint) test.

Shared by every kernel test. Only float64 is checked this way: the truncation error of a
central difference is O(eps^2) and its rounding error O(1e-16 / eps), so eps ~ 1e-6 leaves
about 1e-10 of relative error on smooth functions, well under the 1e-6 the tests demand.
"""
import numpy as np


def numerical_gradient(f, x, eps=1e-6, indices=None):
    """Gradient of the scalar function ``f`` at ``x`` by central differences (only at the
    flat ``indices`` when given; the other entries are left as NaN)."""
    x = np.array(x, dtype=np.float64, copy=True)
    grad = np.full_like(x, np.nan) if indices is not None else np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in (range(flat.size) if indices is None else indices):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def relative_error(a, b):
    """``||a - b|| / max(||a||, ||b||)``, 0 when both are zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def check_vjp(forward, backward, x, rng, eps=1e-6, tol=1e-6, probes=None):
    """Check a vector-Jacobian product against central differences.

    ``forward(x) -> y`` and ``backward(x, y, grad_y) -> grad_x``. The scalar probed is
    ``<forward(x), r>`` for a random ``r``, whose exact gradient is ``backward(x, y, r)``.
    With ``probes``, the differences are taken at that many random entries of ``x`` (always
    including the first and the last) instead of all: for tensors of tens of thousands of
    entries, each of which costs two forward passes. Returns the relative error, after
    asserting it is below ``tol``.
    """
    y = forward(x)
    r = rng.standard_normal(np.shape(y))
    analytic = np.asarray(backward(x, y, r), dtype=np.float64)
    size = int(np.size(x))
    indices = None
    if probes is not None and probes < size:
        indices = np.unique(np.concatenate([[0, size - 1],
                                            rng.choice(size, probes, replace=False)]))
    numeric = numerical_gradient(lambda z: float(np.sum(forward(z) * r)), x, eps, indices)
    if indices is not None:
        analytic, numeric = analytic.reshape(-1)[indices], numeric.reshape(-1)[indices]
    err = relative_error(analytic, numeric)
    assert err < tol, f"gradient check failed: relative error {err:.3e} >= {tol:.0e}"
    return err


def check_adjoint(apply, apply_t, u, v, tol=1e-12):
    """Dot-product test ``<A u, v> == <u, A^T v>`` to rounding."""
    lhs = float(np.vdot(apply(u), v))
    rhs = float(np.vdot(u, apply_t(v)))
    scale = max(abs(lhs), abs(rhs), 1e-300)
    assert abs(lhs - rhs) / scale < tol, f"adjoint test failed: {lhs!r} vs {rhs!r}"
    return abs(lhs - rhs) / scale
