"""Nonlinear conjugate gradients: Torch7 ``optim.cg``, itself a port of Carl E. Rasmussen's
``minimize.m``.

Search directions are Polak-Ribiere,
``s <- (|g_new|^2 - g_new.g_old) / |g_old|^2 * s - g_new``, restarted to steepest descent
when that is not a descent direction. Each line search brackets a step with quadratic/cubic
interpolation and cubic extrapolation (at most ``ext`` times the current step, never closer
than ``interp`` times the bracket to its ends) until the Wolfe-Powell conditions hold::

    f(x + z s) <= f(x) + rho * z * s.g(x)           (sufficient decrease)
    |s.g(x + z s)| <= -sig * s.g(x)                 (curvature)

The next line search starts from the previous step scaled by the slope ratio, capped at
``ratio``.

Faithful to ``cg.lua``:

* ``max_iter`` bounds the function evaluations of ONE line search (``minimize.m``'s ``MAX``)
  and ``max_eval`` (default ``1.25 * max_iter``) the evaluations of one :meth:`CG.step`;
  the homework calls CG with ``maxIter = 2`` on every mini-batch.
* Nothing but scratch buffers survives between calls in Torch (``state.df0..3``, ``s``,
  ``x0``), so every call restarts from steepest descent with initial step
  ``1 / (1 + |g|^2)``. fastconv does the same; its state only counts calls and evaluations.
* The returned history holds the initial loss and the loss after each successful line
  search, not every evaluation.

Two deliberate departures from the Lua text, both restoring ``minimize.m``'s behaviour:

* ``cg.lua`` tests ``if ls_failed or ...`` with ``ls_failed`` in {0, 1}; in Lua 0 is true,
  so the first failed line search always ends the call. ``minimize.m`` instead retries once
  along steepest descent and gives up after two failures in a row; fastconv does that.
* ``cg.lua`` stops extrapolating when the remaining budget ``m == 0``; with the default
  fractional ``max_eval`` the budget jumps from 0.5 to -0.5 and that test never fires, so a
  function decreasing without bound would be extrapolated forever. fastconv tests ``m <= 0``.
"""
import numpy as np

from ._base import Optimizer, as_scalar, axpy, check_count, check_real, dot
from ._registry import register_optimizer


@register_optimizer("cg")
class CG(Optimizer):
    """Polak-Ribiere conjugate gradients with Rasmussen's Wolfe-Powell line search.

    Parameters
    ----------
    params : numpy.ndarray
        Flat float32/float64 parameter vector, updated in place.
    max_iter : int, default 20
        Maximum function evaluations in one line search (Torch's ``maxIter``).
    max_eval : float or None, default None
        Maximum function evaluations per :meth:`step`; ``None`` means ``1.25 * max_iter``.
    rho : float, default 0.01
        Sufficient-decrease constant of the Wolfe-Powell conditions, in (0, sig).
    sig : float, default 0.5
        Curvature constant of the Wolfe-Powell conditions, in (rho, 1).
    interp : float, default 0.1
        Torch's ``int``: do not re-evaluate within ``interp`` of the current bracket's ends.
    ext : float, default 3.0
        Extrapolate at most ``ext`` times the current step, > 1.
    ratio : float, default 100
        Maximum growth of the initial step between line searches, > 0.
    """

    def __init__(self, params, max_iter=20, max_eval=None, rho=0.01, sig=0.5, interp=0.1,
                 ext=3.0, ratio=100.0):
        super().__init__(params)
        name = type(self).__name__
        self.max_iter = check_count(name, "max_iter", max_iter)
        self.max_eval = (1.25 * self.max_iter if max_eval is None
                         else check_real(name, "max_eval", max_eval, low=1.0))
        self.rho = check_real(name, "rho", rho, low=0.0, high=1.0, low_open=True,
                              high_open=True)
        self.sig = check_real(name, "sig", sig, low=self.rho, high=1.0, low_open=True,
                              high_open=True)
        self.interp = check_real(name, "interp", interp, low=0.0, high=0.5, low_open=True,
                                 high_open=True)
        self.ext = check_real(name, "ext", ext, low=1.0, low_open=True)
        self.ratio = check_real(name, "ratio", ratio, low=0.0, low_open=True)
        self.n_calls = 0
        self.n_evals = 0

    def _eval(self, closure):
        loss, grad = self._evaluate(closure, copy=True)
        self.n_evals += 1
        return np.float64(loss), grad

    def step(self, closure):
        """Run line searches until ``max_eval`` evaluations or two failures in a row.

        Returns
        -------
        list of float
            The loss at the start, then after every successful line search; the last entry is
            the loss at the returned ``params`` (``cg.lua``'s ``fx``).
        """
        # IEEE semantics (inf/nan instead of exceptions) as in Lua and Matlab: the line
        # search detects non-finite interpolation steps and falls back to bisection.
        with np.errstate(all="ignore"):
            return self._step(closure)

    def _step(self, closure):
        x = self.params
        rho, sig, interp, ext = self.rho, self.sig, self.interp, self.ext
        max_iter, max_eval = self.max_iter, self.max_eval
        self.n_calls += 1

        i = 0
        ls_failed = False
        f1, df1 = self._eval(closure)
        fx = [float(f1)]
        i += 1
        s = -df1
        d1 = -dot(s, s)
        z1 = 1.0 / (1.0 - d1)

        while i < abs(max_eval):
            x0 = x.copy()
            # df1 arrays are rebound, never written in place, so no copy is needed.
            f0, df0 = f1, df1

            axpy(x, z1, s)
            f2, df2 = self._eval(closure)
            i += 1
            d2 = dot(df2, s)
            # Point 3 starts at point 1; z3 is kept relative to the current point 2.
            f3, d3, z3 = f1, d1, -z1
            m = min(max_iter, max_eval - i)
            success = False
            limit = -1.0

            while True:
                while (f2 > f1 + z1 * rho * d1 or d2 > -sig * d1) and m > 0:
                    # Wolfe-Powell fails: the minimum lies before z1; interpolate inside.
                    limit = z1
                    if f2 > f1:
                        z2 = z3 - (0.5 * d3 * z3 * z3) / (d3 * z3 + f2 - f3)
                    else:
                        a = 6 * (f2 - f3) / z3 + 3 * (d2 + d3)
                        b = 3 * (f3 - f2) - z3 * (d3 + 2 * d2)
                        z2 = (np.sqrt(b * b - a * d2 * z3 * z3) - b) / a
                    if not np.isfinite(z2):
                        z2 = z3 / 2
                    z2 = max(min(z2, interp * z3), (1 - interp) * z3)
                    z1 = z1 + z2
                    axpy(x, z2, s)
                    f2, df2 = self._eval(closure)
                    i += 1
                    m -= 1
                    d2 = dot(df2, s)
                    z3 = z3 - z2
                if f2 > f1 + z1 * rho * d1 or d2 > -sig * d1:
                    break
                if d2 > sig * d1:
                    success = True
                    break
                if m <= 0:
                    break
                # Still descending steeply: extrapolate with a cubic, within the limits.
                a = 6 * (f2 - f3) / z3 + 3 * (d2 + d3)
                b = 3 * (f3 - f2) - z3 * (d3 + 2 * d2)
                z2 = -d2 * z3 * z3 / (b + np.sqrt(b * b - a * d2 * z3 * z3))
                if not np.isfinite(z2) or z2 < 0:
                    z2 = z1 * (ext - 1) if limit < -0.5 else (limit - z1) / 2
                elif limit > -0.5 and z2 + z1 > limit:
                    z2 = (limit - z1) / 2
                elif limit < -0.5 and z2 + z1 > z1 * ext:
                    z2 = z1 * (ext - 1)
                elif z2 < -z3 * interp:
                    z2 = -z3 * interp
                elif limit > -0.5 and z2 < (limit - z1) * (1 - interp):
                    z2 = (limit - z1) * (1 - interp)
                f3, d3, z3 = f2, d2, -z2
                z1 = z1 + z2
                axpy(x, z2, s)
                f2, df2 = self._eval(closure)
                i += 1
                m -= 1
                d2 = dot(df2, s)

            if success:
                f1 = f2
                fx.append(float(f1))
                beta = (dot(df2, df2) - dot(df2, df1)) / dot(df1, df1)
                s *= s.dtype.type(beta)
                s -= df2
                df1, df2 = df2, df1
                d2 = dot(df1, s)
                if d2 > 0:
                    s = -df1
                    d2 = -dot(s, s)
                # 1e-320 (from cg.lua; realmin in minimize.m) keeps the ratio finite.
                z1 = z1 * min(self.ratio, d1 / (d2 - 1e-320))
                d1 = d2
                ls_failed = False
            else:
                x[...] = x0
                f1, df1 = f0, df0
                if ls_failed or i > max_eval:
                    break
                # minimize.m swaps the derivatives here, so the retry follows the gradient
                # of the rejected point; kept for fidelity.
                df1, df2 = df2, df1
                s = -df1
                d1 = -dot(s, s)
                z1 = 1.0 / (1.0 - d1)
                ls_failed = True
        return fx

    def state_dict(self):
        """Hyperparameters and counters (CG keeps no search state between calls)."""
        return {"optimizer": "CG", "max_iter": self.max_iter, "max_eval": self.max_eval,
                "rho": self.rho, "sig": self.sig, "interp": self.interp, "ext": self.ext,
                "ratio": self.ratio, "n_calls": self.n_calls, "n_evals": self.n_evals}

    def load_state_dict(self, d):
        """Restore everything :meth:`state_dict` saved."""
        self._check_state_name(d)
        self.max_iter = as_scalar(d["max_iter"], int)
        for key in ("max_eval", "rho", "sig", "interp", "ext", "ratio"):
            setattr(self, key, as_scalar(d[key]))
        self.n_calls = as_scalar(d["n_calls"], int)
        self.n_evals = as_scalar(d["n_evals"], int)
