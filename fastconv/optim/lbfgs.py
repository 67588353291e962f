"""Limited-memory BFGS as in Torch7 ``optim.lbfgs`` (itself after Mark Schmidt's minFunc),
with an optional strong-Wolfe line search ported from ``optim.lswolfe``/``optim.polyinterp``.

Each :meth:`LBFGS.step` evaluates the closure at the current point, then runs up to
``max_iter`` iterations. Iteration ``k`` updates the memory with the last step
``s = t * d`` and gradient change ``y = g - g_old`` (skipped unless ``y.s > 1e-10``, keeping
the inverse-Hessian estimate positive definite), scales the initial inverse Hessian by
``Hdiag = y.s / y.y`` and computes ``d = -H g`` with the two-loop recursion over the last
``n_correction`` pairs. The step length is

* ``t = lr`` (Torch's default, no line search): a fixed step, cheap and suited to the noisy
  mini-batch objectives of the homework; the function is not re-evaluated after the last
  iteration of a call, because the next mini-batch will be a different function anyway;
* the result of a strong-Wolfe line search started at ``t = lr`` when
  ``line_search="strong_wolfe"``.

The very first iteration (over the optimizer's lifetime) uses ``d = -g`` and
``t = min(1, 1 / sum|g|) * lr``. With ``memory="persistent"`` (the default) all of ``d, t, old_dirs, old_steps, Hdiag,
g_old, f_old`` persist between calls, as in Torch: with a new mini-batch per call, ``y``
mixes gradients of two mini-batches, which is what the homework's L-BFGS runs did. With
``memory="step"`` every call starts afresh (``d = -g``, no pairs), so every curvature pair
is formed on the call's own objective: L-BFGS proper on each mini-batch, which is sound when
a mini-batch is large enough to be worth several iterations (thousands of samples).

A call stops early when ``sum|g| <= tol_fun``, ``g.d > -tol_x`` (no descent possible),
``sum|t d| <= tol_x``, ``|f - f_old| < tol_x`` or the evaluation budget ``max_eval`` is
used up. ``n_correction`` defaults to the homework's 10 (``lbfgs.lua`` says 100).
"""
import numpy as np

from ._base import Optimizer, as_scalar, axpy, check_count, check_real, dot
from ._registry import register_optimizer


def _l1(a):
    return np.float64(np.abs(a).sum(dtype=np.float64))


def cubic_minimizer(t1, f1, g1, t2, f2, g2, bounds=None):
    """Minimizer of the cubic through two points with values and slopes (minFunc polyinterp).

    The cubic ``p`` satisfies ``p(t1) = f1, p'(t1) = g1, p(t2) = f2, p'(t2) = g2``.

    Parameters
    ----------
    t1, f1, g1, t2, f2, g2 : float
        Step lengths, function values and directional derivatives at the two points.
    bounds : (float, float) or None
        ``None`` interpolates inside ``[min(t1, t2), max(t1, t2)]`` with the closed form
        (Nocedal & Wright eq. 3.59) and bisects when the cubic has no local minimum.
        Given bounds ``(lo, hi)`` (used to extrapolate) the result is the point of lowest
        ``p`` among ``lo``, ``hi`` and the stationary points of ``p`` inside them.

    Returns
    -------
    float
    """
    if bounds is None:
        if t1 > t2:
            t1, f1, g1, t2, f2, g2 = t2, f2, g2, t1, f1, g1
        if t1 == t2:
            return t1
        d1 = g1 + g2 - 3 * (f1 - f2) / (t1 - t2)
        disc = d1 * d1 - g1 * g2
        if not disc >= 0:
            return (t1 + t2) / 2
        d2 = np.sqrt(disc)
        t = t2 - (t2 - t1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        if not np.isfinite(t):
            return (t1 + t2) / 2
        return min(max(t, t1), t2)

    lo, hi = bounds
    mid = (lo + hi) / 2
    h = t2 - t1
    if h == 0 or not all(np.isfinite(v) for v in (t1, f1, g1, t2, f2, g2, lo, hi)):
        return mid
    # p(t1 + u) = f1 + g1 u + c2 u^2 + c3 u^3, with the two conditions at u = h.
    r1 = f2 - f1 - g1 * h
    r2 = g2 - g1
    c3 = (r2 * h - 2 * r1) / h ** 3
    c2 = (3 * r1 - r2 * h) / h ** 2
    if not (np.isfinite(c2) and np.isfinite(c3)):
        return mid
    candidates = [lo, hi]
    if c3 != 0 or c2 != 0:
        # np.roots drops a zero leading coefficient, covering the quadratic case.
        for root in np.roots([3 * c3, 2 * c2, g1]):
            if np.isreal(root):
                t = t1 + float(np.real(root))
                if lo <= t <= hi:
                    candidates.append(t)
    best, best_val = mid, np.inf
    for t in candidates:
        u = t - t1
        val = f1 + u * (g1 + u * (c2 + u * c3))
        if val < best_val:
            best, best_val = t, val
    return best


def strong_wolfe(evaluate, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tol_x=1e-9, max_iter=20):
    """Line search for a step satisfying the strong Wolfe conditions (``optim.lswolfe``).

    Conditions, with ``phi(t) = f(x + t d)``::

        phi(t) <= phi(0) + c1 t phi'(0)      and      |phi'(t)| <= -c2 phi'(0)

    First bracket (extrapolating with :func:`cubic_minimizer` between
    ``t + 0.01 (t - t_prev)`` and ``10 t``), then zoom (cubic interpolation, moved 10% inside
    the bracket when progress stalls), as in minFunc's ``WolfeLineSearch``.

    Parameters
    ----------
    evaluate : callable
        ``evaluate() -> (f, g)`` at the current contents of ``x`` (``g`` a private copy).
    x : numpy.ndarray
        Start point; on return it holds ``x + t d`` for the returned ``t``.
    t : float
        Initial step.
    d : numpy.ndarray
        Descent direction.
    f, g, gtd : float, numpy.ndarray, float
        Value, gradient and directional derivative ``g.d < 0`` at ``x``.
    c1, c2 : float
        Sufficient-decrease and curvature constants, ``0 < c1 < c2 < 1``.
    tol_x : float
        Stop zooming when ``|bracket width * phi'| < tol_x``.
    max_iter : int
        Maximum extra evaluations (the first trial step is not counted, as in Torch).

    Returns
    -------
    f_new, g_new, t, n_evals : float, numpy.ndarray, float, int
        Value and gradient at the new ``x``, the step taken and the evaluations used. When no
        Wolfe point is found, the lowest point evaluated (possibly ``t = 0``) is returned.
    """
    x_init = x.copy()

    def try_step(step):
        x[...] = x_init
        axpy(x, step, d)
        f_step, g_step = evaluate()
        return f_step, g_step, dot(g_step, d)

    f_new, g_new, gtd_new = try_step(t)
    n_evals = 1
    ls_iter = 0
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    bracket = None
    while ls_iter < max_iter:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = [[t, f_new, g_new, gtd_new]]
            done = True
            break
        if gtd_new >= 0:
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        # Still descending steeply: extrapolate, at least 1% past t and at most 10 t.
        t_older, t_prev = t_prev, t
        t = cubic_minimizer(t_older, f_prev, gtd_prev, t, f_new, gtd_new,
                            bounds=(t + 0.01 * (t - t_older), t * 10))
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new, gtd_new = try_step(t)
        n_evals += 1
        ls_iter += 1
    if ls_iter == max_iter:
        bracket = [[0.0, f, g, gtd], [t, f_new, g_new, gtd_new]]

    insufficient_progress = False
    while not done and ls_iter < max_iter:
        lo = 0 if bracket[0][1] <= bracket[1][1] else 1
        hi = 1 - lo
        (ta, fa, _, gda), (tb, fb, _, gdb) = bracket
        t = cubic_minimizer(ta, fa, gda, tb, fb, gdb)
        b_max, b_min = max(ta, tb), min(ta, tb)
        width = b_max - b_min
        # A trial point too close to the bracket's ends makes slow progress: if that
        # happened twice, or the point is on an end, move it 10% of the width inside.
        if width > 0 and min(b_max - t, t - b_min) / width < 0.1:
            if insufficient_progress or t >= b_max or t <= b_min:
                if abs(t - b_max) < abs(t - b_min):
                    t = b_max - 0.1 * width
                else:
                    t = b_min + 0.1 * width
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False

        f_new, g_new, gtd_new = try_step(t)
        n_evals += 1
        ls_iter += 1
        new = [t, f_new, g_new, gtd_new]
        if f_new > f + c1 * t * gtd or f_new >= bracket[lo][1]:
            bracket[hi] = new
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[hi][0] - bracket[lo][0]) >= 0:
                bracket[hi] = bracket[lo]
            bracket[lo] = new
        if not done and abs((bracket[0][0] - bracket[1][0]) * gtd_new) < tol_x:
            break

    lo = min(range(len(bracket)), key=lambda j: bracket[j][1])
    t, f_new, g_new, _ = bracket[lo]
    x[...] = x_init
    axpy(x, t, d)
    return f_new, g_new, t, n_evals


_LS_DEFAULTS = {"c1": 1e-4, "c2": 0.9, "tol_x": 1e-9, "max_iter": 20}


@register_optimizer("lbfgs")
class LBFGS(Optimizer):
    """Limited-memory BFGS with a fixed step (Torch default) or a strong-Wolfe line search.

    Parameters
    ----------
    params : numpy.ndarray
        Flat float32/float64 parameter vector, updated in place.
    lr : float, default 1.0
        ``learningRate``: the fixed step, or the line search's initial step (> 0). The
        homework's driver passes 1e-3.
    max_iter : int, default 20
        Iterations per :meth:`step` (the homework's driver passes 2).
    max_eval : float or None, default None
        Function evaluations per :meth:`step`; ``None`` means ``1.25 * max_iter``.
    tol_fun : float, default 1e-5
        Stop when ``sum|g| <= tol_fun``.
    tol_x : float, default 1e-9
        Stop when ``g.d > -tol_x``, ``sum|t d| <= tol_x`` or ``|f - f_old| < tol_x``.
    n_correction : int, default 10
        Number of (s, y) pairs kept.
    line_search : {None, "strong_wolfe"}, default None
        ``None`` takes fixed steps of ``lr``.
    line_search_options : dict, optional
        For ``"strong_wolfe"``: ``c1`` (1e-4), ``c2`` (0.9), ``tol_x`` (1e-9), ``max_iter`` (20).
    memory : {"persistent", "step"}, default "persistent"
        ``"persistent"`` keeps the correction pairs and the last direction across calls
        (Torch); ``"step"`` clears them at the start of every call.

    Notes
    -----
    Built by name (:func:`fastconv.optim.spec`), L-BFGS also takes ``mode``: ``"torch"``
    (the default: the options above as given) or ``"batch"``, L-BFGS proper on each
    mini-batch, whose defaults become ``lr=1.0``, ``line_search="strong_wolfe"``,
    ``memory="step"`` (fresh memory per mini-batch, so that every pair is formed on one
    objective); meant for mini-batches of thousands of samples (``batch_size``).
    """

    spec_options = ("mode",)
    MODES = ("torch", "batch")

    @classmethod
    def from_options(cls, params, context, mode="torch", **options):
        """Build for a training run (see Notes)."""
        if mode not in cls.MODES:
            raise ValueError(f"LBFGS: mode must be one of {list(cls.MODES)}; got {mode!r}")
        if mode == "batch":
            options = {"lr": 1.0, "line_search": "strong_wolfe", "memory": "step", **options}
        return cls(params, **options)

    def __init__(self, params, lr=1.0, max_iter=20, max_eval=None, tol_fun=1e-5, tol_x=1e-9,
                 n_correction=10, line_search=None, line_search_options=None,
                 memory="persistent"):
        super().__init__(params)
        name = type(self).__name__
        if memory not in ("persistent", "step"):
            raise ValueError(f"{name}: memory must be 'persistent' or 'step'; got {memory!r}")
        self.memory = memory
        self.lr = check_real(name, "lr", lr, low=0.0, low_open=True)
        self.max_iter = check_count(name, "max_iter", max_iter)
        self.max_eval = (1.25 * self.max_iter if max_eval is None
                         else check_real(name, "max_eval", max_eval, low=1.0))
        self.tol_fun = check_real(name, "tol_fun", tol_fun, low=0.0)
        self.tol_x = check_real(name, "tol_x", tol_x, low=0.0)
        self.n_correction = check_count(name, "n_correction", n_correction)
        if line_search not in (None, "strong_wolfe"):
            raise ValueError(f"{name}: line_search must be None or 'strong_wolfe'; "
                             f"got {line_search!r}")
        self.line_search = line_search
        options = dict(line_search_options or {})
        unknown = set(options) - set(_LS_DEFAULTS)
        if unknown:
            raise ValueError(f"{name}: unknown line_search_options {sorted(unknown)}; "
                             f"valid: {sorted(_LS_DEFAULTS)}")
        options = {**_LS_DEFAULTS, **options}
        c1 = check_real(name, "line_search_options['c1']", options["c1"], low=0.0, high=1.0,
                        low_open=True, high_open=True)
        c2 = check_real(name, "line_search_options['c2']", options["c2"], low=c1, high=1.0,
                        low_open=True, high_open=True)
        self.ls_c1, self.ls_c2 = c1, c2
        self.ls_tol_x = check_real(name, "line_search_options['tol_x']", options["tol_x"],
                                   low=0.0)
        self.ls_max_iter = check_count(name, "line_search_options['max_iter']",
                                       options["max_iter"])
        self.n_iter = 0
        self.func_evals = 0
        self.d = None
        self.t = None
        self.old_dirs = []
        self.old_steps = []
        self.hdiag = 1.0
        self.g_old = None
        self.f_old = None

    def _eval(self, closure):
        loss, grad = self._evaluate(closure, copy=True)
        return np.float64(loss), grad

    def step(self, closure):
        """Run up to ``max_iter`` L-BFGS iterations from the current ``params``.

        Returns
        -------
        list of float
            The loss at the start, then after every iteration that evaluated the function
            (``lbfgs.lua``'s ``f_hist``). Without line search the last iteration of a call is
            not evaluated, so the last entry is the loss *before* the last step.
        """
        with np.errstate(all="ignore"):
            return self._step(closure)

    def _step(self, closure):
        if self.memory == "step":
            self.n_iter = 0
        x = self.params
        dtype = x.dtype.type
        f, g = self._eval(closure)
        f_hist = [float(f)]
        current_evals = 1
        self.func_evals += 1
        if _l1(g) <= self.tol_fun:
            return f_hist

        d, t, hdiag = self.d, self.t, self.hdiag
        old_dirs, old_steps = self.old_dirs, self.old_steps
        g_old, f_old = self.g_old, self.f_old
        n_iter = 0
        while n_iter < self.max_iter:
            n_iter += 1
            self.n_iter += 1
            if self.n_iter == 1:
                d = -g
                old_dirs, old_steps, hdiag = [], [], 1.0
            else:
                y = g - g_old
                s = d * dtype(t)
                ys = dot(y, s)
                if ys > 1e-10:
                    if len(old_dirs) == self.n_correction:
                        old_dirs.pop(0)
                        old_steps.pop(0)
                    old_dirs.append(s)
                    old_steps.append(y)
                    hdiag = ys / dot(y, y)
                k = len(old_dirs)
                ro = [1 / dot(old_steps[i], old_dirs[i]) for i in range(k)]
                al = [0.0] * k
                q = -g
                for i in range(k - 1, -1, -1):
                    al[i] = dot(old_dirs[i], q) * ro[i]
                    axpy(q, -al[i], old_steps[i])
                d = q * dtype(hdiag)
                for i in range(k):
                    be_i = dot(old_steps[i], d) * ro[i]
                    axpy(d, al[i] - be_i, old_dirs[i])
            # g is rebound by every evaluation, never written in place: no copy needed.
            g_old, f_old = g, f

            gtd = dot(g, d)
            if gtd > -self.tol_x:
                break
            if self.n_iter == 1:
                t = min(1.0, 1 / _l1(g)) * self.lr
            else:
                t = self.lr

            if self.line_search == "strong_wolfe":
                f, g, t, ls_evals = strong_wolfe(
                    lambda: self._eval(closure), x, t, d, f, g, gtd, c1=self.ls_c1,
                    c2=self.ls_c2, tol_x=self.ls_tol_x, max_iter=self.ls_max_iter)
                f_hist.append(float(f))
            else:
                axpy(x, t, d)
                ls_evals = 0
                if n_iter != self.max_iter:
                    f, g = self._eval(closure)
                    ls_evals = 1
                    f_hist.append(float(f))
            current_evals += ls_evals
            self.func_evals += ls_evals

            if n_iter == self.max_iter or current_evals >= self.max_eval:
                break
            if _l1(g) <= self.tol_fun:
                break
            if abs(t) * _l1(d) <= self.tol_x:
                break
            if abs(f - f_old) < self.tol_x:
                break

        self.d, self.t, self.hdiag = d, t, hdiag
        self.old_dirs, self.old_steps = old_dirs, old_steps
        self.g_old, self.f_old = g_old, f_old
        return f_hist

    def state_dict(self):
        """Hyperparameters, counters and the whole L-BFGS memory, as plain data.

        ``old_dirs`` and ``old_steps`` are stacked into ``(k, n)`` arrays; entries that do
        not exist yet (before the first iteration) are left out.
        """
        p = self.params.size
        d = {"optimizer": "LBFGS", "lr": self.lr, "max_iter": self.max_iter,
             "max_eval": self.max_eval, "tol_fun": self.tol_fun, "tol_x": self.tol_x,
             "n_correction": self.n_correction, "line_search": self.line_search or "none",
             "ls_c1": self.ls_c1, "ls_c2": self.ls_c2, "ls_tol_x": self.ls_tol_x,
             "ls_max_iter": self.ls_max_iter, "memory": self.memory, "n_iter": self.n_iter,
             "func_evals": self.func_evals, "hdiag": float(self.hdiag),
             "old_dirs": (np.stack(self.old_dirs) if self.old_dirs
                          else np.empty((0, p), self.params.dtype)),
             "old_steps": (np.stack(self.old_steps) if self.old_steps
                           else np.empty((0, p), self.params.dtype))}
        if self.t is not None:
            d["t"] = float(self.t)
        if self.f_old is not None:
            d["f_old"] = float(self.f_old)
        for key in ("d", "g_old"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value.copy()
        return d

    def load_state_dict(self, d):
        """Restore everything :meth:`state_dict` saved (hyperparameters included)."""
        self._check_state_name(d)
        self.lr = as_scalar(d["lr"])
        self.max_iter = as_scalar(d["max_iter"], int)
        self.max_eval = as_scalar(d["max_eval"])
        self.tol_fun = as_scalar(d["tol_fun"])
        self.tol_x = as_scalar(d["tol_x"])
        self.n_correction = as_scalar(d["n_correction"], int)
        line_search = as_scalar(d["line_search"], str)
        self.line_search = None if line_search == "none" else line_search
        self.ls_c1 = as_scalar(d["ls_c1"])
        self.ls_c2 = as_scalar(d["ls_c2"])
        self.ls_tol_x = as_scalar(d["ls_tol_x"])
        self.ls_max_iter = as_scalar(d["ls_max_iter"], int)
        # Checkpoints written before the option existed were all Torch's persistent memory.
        self.memory = as_scalar(d["memory"], str) if "memory" in d else "persistent"
        self.n_iter = as_scalar(d["n_iter"], int)
        self.func_evals = as_scalar(d["func_evals"], int)
        self.hdiag = as_scalar(d["hdiag"])
        self.old_dirs = [row.copy() for row in self._load_array(d, "old_dirs")]
        self.old_steps = [row.copy() for row in self._load_array(d, "old_steps")]
        self.t = as_scalar(d["t"]) if "t" in d else None
        self.f_old = np.float64(as_scalar(d["f_old"])) if "f_old" in d else None
        self.d = self._load_array(d, "d") if "d" in d else None
        self.g_old = self._load_array(d, "g_old") if "g_old" in d else None
