"""Tests for fastconv.optim: convergence is asserted, formulas are checked by hand, state
dictionaries resume bit for bit, and every validation branch raises."""
import math

import numpy as np
import pytest
from scipy.optimize import minimize as scipy_minimize

from fastconv.optim import (ASGD, CG, LBFGS, SGD, SwitchSchedule, cubic_minimizer,
                            strong_wolfe)


# --------------------------------------------------------------------------- objectives

class Quadratic:
    """f(x) = 0.5 x^T A x - b^T x with A SPD (eigenvalues in [1, 10]); minimum A^-1 b."""

    def __init__(self, rng, n=8, dtype=np.float64):
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        self.A = (q * np.linspace(1.0, 10.0, n)) @ q.T
        self.b = rng.standard_normal(n)
        self.x_star = np.linalg.solve(self.A, self.b)
        self.f_star = -0.5 * self.b @ self.x_star
        self.dtype = dtype

    def value_grad(self, x):
        x64 = x.astype(np.float64)
        g = self.A @ x64 - self.b
        return 0.5 * x64 @ (g - self.b), g.astype(self.dtype)


def rosenbrock(x):
    """Rasmussen's n-D Rosenbrock (torch/optim test/rosenbrock.lua); minimum 0 at ones."""
    x = x.astype(np.float64)
    r = x[1:] - x[:-1] ** 2
    f = np.sum(100 * r ** 2 + (1 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * r - 2 * (1 - x[:-1])
    g[1:] += 200 * r
    return f, g


class Model:
    """Stands in for an nn model: a contiguous parameter storage the closure reads from.

    The optimizer receives ``params``, a view of ``storage``; if it ever replaced or copied
    the vector instead of updating it in place, the closure would not see the updates.
    """

    def __init__(self, x0, fun, dtype=np.float64):
        self.storage = np.zeros(len(x0) + 2, dtype=dtype)
        self.params = self.storage[1:-1]
        self.params[...] = x0
        self.fun = fun
        self.n_evals = 0
        self.batch = 0

    def closure(self):
        self.n_evals += 1
        f, g = self.fun(self.storage[1:-1])
        return f, np.asarray(g, dtype=self.storage.dtype)


def run(opt, model, n_steps):
    losses = []
    for _ in range(n_steps):
        model.batch += 1
        losses.extend(opt.step(model.closure))
    return losses


# --------------------------------------------------------------------------- quadratic

QUAD_CASES = {
    "sgd": (lambda p: SGD(p, lr=0.1), 400),
    "sgd-momentum": (lambda p: SGD(p, lr=0.1, momentum=0.9), 400),
    "sgd-momentum-nodamp": (lambda p: SGD(p, lr=0.01, momentum=0.9, dampening=0), 600),
    "sgd-nesterov": (lambda p: SGD(p, lr=0.01, momentum=0.9, dampening=0, nesterov=True), 600),
    "cg": (lambda p: CG(p, max_iter=20, max_eval=60), 3),
    # Tolerances below Torch's defaults (tol_fun 1e-5 on sum|g|, tol_x 1e-9 on |f - f_old|),
    # which stop at |x - x*| ~ 1e-6 by design.
    "lbfgs-fixed": (lambda p: LBFGS(p, lr=1.0, max_iter=100, max_eval=200, tol_fun=1e-12,
                                    tol_x=1e-15), 1),
    "lbfgs-wolfe": (lambda p: LBFGS(p, line_search="strong_wolfe", max_iter=50,
                                    max_eval=200, tol_fun=1e-12, tol_x=1e-15), 1),
}


@pytest.mark.parametrize("name", sorted(QUAD_CASES))
def test_quadratic_converges(name, rng):
    """Every optimizer reaches A^-1 b to 1e-6 (the objective is strongly convex)."""
    quad = Quadratic(rng)
    make, n_steps = QUAD_CASES[name]
    model = Model(np.zeros(8), quad.value_grad)
    run(make(model.params), model, n_steps)
    np.testing.assert_allclose(model.params, quad.x_star, atol=1e-6)


def test_asgd_quadratic_converges_to_regularized_minimum(rng):
    """ASGD's lambda shrinks x: it solves (A + lambda I) x = b, and the average ax follows."""
    quad = Quadratic(rng)
    lambd = 1e-2
    x_reg = np.linalg.solve(quad.A + lambd * np.eye(8), quad.b)
    assert np.linalg.norm(x_reg - quad.x_star) > 1e-4
    model = Model(np.zeros(8), quad.value_grad)
    opt = ASGD(model.params, lr=0.1, lambd=lambd, t0=200)
    run(opt, model, 4000)
    np.testing.assert_allclose(model.params, x_reg, atol=1e-8)
    # The average includes iterates 200..4000 whose error decays geometrically, so it is
    # off by about (sum of early errors) / 3800.
    np.testing.assert_allclose(opt.averaged(), x_reg, atol=1e-3)


# --------------------------------------------------------------------------- Rosenbrock

def test_sgd_rosenbrock_small_lr():
    """Plain SGD (lr 1e-3) creeps along the valley: 30k steps reach (1, 1) to 1e-5."""
    model = Model(np.zeros(2), rosenbrock)
    run(SGD(model.params, lr=1e-3, lr_decay=0), model, 30000)
    np.testing.assert_allclose(model.params, [1, 1], atol=1e-5)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_rosenbrock(nesterov):
    model = Model(np.zeros(2), rosenbrock)
    opt = SGD(model.params, lr=1e-3, lr_decay=0, momentum=0.9, dampening=0, nesterov=nesterov)
    run(opt, model, 5000)
    np.testing.assert_allclose(model.params, [1, 1], atol=1e-8)


def test_asgd_rosenbrock():
    """lambda = 0 (no shrinkage); averaging from step 10k: the average lags the iterate
    (it still remembers the valley) but both end near (1, 1)."""
    model = Model(np.zeros(2), rosenbrock)
    opt = ASGD(model.params, lr=1e-3, lambd=0.0, t0=10000)
    run(opt, model, 40000)
    np.testing.assert_allclose(model.params, [1, 1], atol=1e-6)
    np.testing.assert_allclose(opt.averaged(), [1, 1], atol=2e-3)


# minimize.m's published run from [0 0] (www.gatsby.ucl.ac.uk/~edward/code/minimize/
# example.html); cg.lua claims to reproduce it. fx after each successful line search:
MINIMIZE_M_FX = [0.78251060908545, 0.39556533940410, 0.21891183735928, 0.08594362786359,
                 0.08167279250615, 0.04803799828332, 0.03385004042904, 0.01810891772958,
                 0.01747706436156, 0.01719294050541, 0.00647710313861, 0.00317008743069,
                 0.00002390064486, 0.00000859309602, 0.00000859309029, 0.00000076626706,
                 0.00000000009216]


def test_cg_reproduces_minimize_m_on_rosenbrock():
    model = Model(np.zeros(2), rosenbrock)
    fx = CG(model.params, max_iter=20, max_eval=200).step(model.closure)
    assert fx[0] == 1.0
    np.testing.assert_allclose(fx[1:len(MINIMIZE_M_FX) + 1], MINIMIZE_M_FX, rtol=1e-9,
                               atol=2e-14)
    np.testing.assert_allclose(model.params, [1, 1], atol=1e-10)


def test_cg_budget_of_25_evaluations_matches_minimize_m():
    """``minimize(X, f, -25)``: 25 evaluations, 8 line searches, f = 0.018108917729..."""
    model = Model(np.zeros(2), rosenbrock)
    opt = CG(model.params, max_iter=20, max_eval=25)
    fx = opt.step(model.closure)
    assert opt.n_evals == model.n_evals == 25
    np.testing.assert_allclose(fx[1:], MINIMIZE_M_FX[:8], rtol=1e-9)
    assert rosenbrock(model.params)[0] == pytest.approx(fx[-1], rel=1e-12)


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_rosenbrock(line_search):
    """From the classic start (-1.2, 1); a fixed unit step happens to converge here too."""
    model = Model(np.array([-1.2, 1.0]), rosenbrock)
    opt = LBFGS(model.params, max_iter=200, max_eval=400, line_search=line_search)
    fx = opt.step(model.closure)
    np.testing.assert_allclose(model.params, [1, 1], atol=1e-5)
    assert fx[-1] < 1e-10
    if line_search:
        assert all(b <= a for a, b in zip(fx, fx[1:])), "a Wolfe step never increases f"


# --------------------------------------------------------------------------- vs scipy

@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock-10d"])
@pytest.mark.parametrize("ours,theirs", [
    (lambda p: CG(p, max_iter=20, max_eval=2000), "CG"),
    (lambda p: LBFGS(p, line_search="strong_wolfe", max_iter=500, max_eval=2000), "L-BFGS-B"),
])
def test_same_minimum_as_scipy(problem, ours, theirs, rng):
    if problem == "quadratic":
        quad = Quadratic(rng, n=20)
        fun, x0 = quad.value_grad, np.zeros(20)
    else:
        fun, x0 = rosenbrock, np.linspace(-1.0, 0.5, 10)
    ref = scipy_minimize(fun, x0, jac=True, method=theirs, options={"gtol": 1e-10})
    model = Model(x0, fun)
    opt = ours(model.params)
    for _ in range(5):
        fx = opt.step(model.closure)
    assert fx[-1] == pytest.approx(ref.fun, abs=1e-9)
    np.testing.assert_allclose(model.params, ref.x, atol=1e-4)


# --------------------------------------------------------------------------- formulas

class Scripted:
    """A closure returning a fixed sequence of gradients (and recording the x it saw)."""

    def __init__(self, params, grads):
        self.params, self.grads, self.seen = params, list(grads), []

    def __call__(self):
        self.seen.append(self.params.copy())
        return float(len(self.seen)), np.array(self.grads[len(self.seen) - 1])


def test_sgd_formulas_by_hand():
    """lr decay, weight decay, Torch dampening (= momentum) with an undamped first step."""
    lr, lrd, wd, mom = 0.1, 0.5, 0.01, 0.9
    x = np.array([1.0, -2.0])
    grads = [np.array([0.5, 1.0]), np.array([-1.0, 2.0]), np.array([3.0, 0.25])]
    opt = SGD(x, lr=lr, lr_decay=lrd, weight_decay=wd, momentum=mom)
    closure = Scripted(x, grads)
    losses = [opt.step(closure) for _ in grads]
    assert losses == [[1.0], [2.0], [3.0]]

    ex = np.array([1.0, -2.0])
    g0 = grads[0] + wd * ex
    v = g0
    ex = ex - lr / (1 + 0 * lrd) * v
    g1 = grads[1] + wd * ex
    v = mom * v + (1 - mom) * g1
    ex = ex - lr / (1 + 1 * lrd) * v
    g2 = grads[2] + wd * ex
    v = mom * v + (1 - mom) * g2
    ex = ex - lr / (1 + 2 * lrd) * v
    np.testing.assert_allclose(x, ex, rtol=1e-15)
    np.testing.assert_allclose(opt.momentum_buffer, v, rtol=1e-15)
    assert opt.n_updates == 3
    assert opt.current_lr() == pytest.approx(lr / (1 + 3 * lrd))


def test_sgd_nesterov_and_plain_by_hand():
    x = np.array([0.0])
    grads = [np.array([1.0]), np.array([2.0])]
    opt = SGD(x, lr=1.0, lr_decay=0, momentum=0.5, dampening=0, nesterov=True)
    closure = Scripted(x, grads)
    opt.step(closure)
    assert x[0] == -(1.0 + 0.5 * 1.0)          # v = g; step g + m v
    opt.step(closure)
    v = 0.5 * 1.0 + 2.0
    assert x[0] == -1.5 - (2.0 + 0.5 * v)

    y = np.array([3.0])
    plain = SGD(y, lr=0.25, lr_decay=1e-7)
    plain.step(lambda: (0.0, np.array([2.0])))
    plain.step(lambda: (0.0, np.array([2.0])))
    assert y[0] == 3.0 - 0.25 * 2.0 - 0.25 / (1 + 1e-7) * 2.0


def test_asgd_formulas_by_hand():
    """eta_t = eta0 / (1 + lambda eta0 t)^alpha, mu_t = 1 / max(1, t - t0), x shrinks by
    (1 - lambda eta_t), a := a + mu_t (x - a)."""
    eta0, lambd, alpha, t0 = 0.5, 0.2, 0.75, 1
    x = np.array([1.0, 2.0])
    grads = [np.array([1.0, -1.0]), np.array([0.5, 0.5]), np.array([-2.0, 1.0]),
             np.array([1.0, 1.0])]
    opt = ASGD(x, lr=eta0, lambd=lambd, alpha=alpha, t0=t0)
    closure = Scripted(x, grads)
    ex, ea, eta, mu = np.array([1.0, 2.0]), None, eta0, 1.0
    for t, g in enumerate(grads, start=1):
        opt.step(closure)
        ex = (1 - lambd * eta) * ex - eta * g
        ea = ex.copy() if mu == 1 else ea + mu * (ex - ea)
        eta = eta0 / (1 + lambd * eta0 * t) ** alpha
        mu = 1 / max(1, t - t0)
        np.testing.assert_allclose(x, ex, rtol=1e-15)
        np.testing.assert_allclose(opt.ax, ea, rtol=1e-15)
        assert (opt.t, opt.eta_t, opt.mu_t) == (t, pytest.approx(eta), pytest.approx(mu))
    assert opt.mu_t == 1 / 3   # averaging really started (mu < 1 for steps 3 and 4)


def test_asgd_swap_in_average_restores_even_on_error():
    x = np.array([1.0, 2.0])
    opt = ASGD(x, lr=0.1, t0=0)
    for g in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0]):
        opt.step(lambda g=g: (0.0, np.array(g)))
    iterate, average = x.copy(), opt.averaged()
    assert not np.array_equal(iterate, average)
    with opt.swap_in_average() as p:
        assert p is x and np.array_equal(x, average)
    assert np.array_equal(x, iterate)
    with pytest.raises(RuntimeError):
        with opt.swap_in_average():
            raise RuntimeError("evaluation failed")
    assert np.array_equal(x, iterate)


def test_cubic_minimizer():
    p = np.polynomial.Polynomial([1.0, -6.0, 1.5, 1.0])   # p' = 3 (t - 1)(t + 2)
    dp = p.deriv()
    t_min = 1.0
    assert cubic_minimizer(0.0, p(0), dp(0), 3.0, p(3), dp(3)) == pytest.approx(t_min)
    assert cubic_minimizer(3.0, p(3), dp(3), 0.0, p(0), dp(0)) == pytest.approx(t_min)
    # Extrapolation within bounds: from two points left of the minimum.
    assert cubic_minimizer(0.0, p(0), dp(0), 0.5, p(0.5), dp(0.5),
                           bounds=(0.6, 5.0)) == pytest.approx(t_min)
    # The minimum lies beyond the bounds: the best bound is returned.
    assert cubic_minimizer(0.0, p(0), dp(0), 0.5, p(0.5), dp(0.5), bounds=(0.6, 0.9)) == 0.9
    # A monotone cubic has no minimum inside: bisection.
    assert cubic_minimizer(0.0, 0.0, 1.0, 2.0, 8.0 + 2.0, 12.0 + 1.0) == 1.0


@pytest.mark.parametrize("t_init", [1e-3, 1.0, 50.0])
def test_strong_wolfe_conditions_hold(t_init):
    x0 = np.array([-1.2, 1.0])
    x = x0.copy()
    f, g = rosenbrock(x)
    d = -g / np.linalg.norm(g)
    gtd = g @ d
    c1, c2 = 1e-4, 0.9
    f_new, g_new, t, n = strong_wolfe(lambda: rosenbrock(x), x, t_init, d, f, g, gtd, c1, c2)
    np.testing.assert_array_equal(x, x0 + t * d)
    assert f_new == rosenbrock(x)[0]
    np.testing.assert_array_equal(g_new, rosenbrock(x)[1])
    assert f_new <= f + c1 * t * gtd
    assert abs(g_new @ d) <= -c2 * gtd
    assert 1 <= n <= 21


# --------------------------------------------------------------------------- state dicts

ALL_CASES = {
    "sgd": lambda p: SGD(p, lr=2e-4, lr_decay=1e-2, weight_decay=1e-3, momentum=0.8),
    "sgd-nesterov": lambda p: SGD(p, lr=2e-4, momentum=0.9, dampening=0, nesterov=True),
    "asgd": lambda p: ASGD(p, lr=2e-4, lambd=1e-3, t0=3),
    "cg": lambda p: CG(p, max_iter=10, max_eval=40),
    "lbfgs-fixed": lambda p: LBFGS(p, lr=1e-2, max_iter=3, n_correction=3),
    "lbfgs-wolfe": lambda p: LBFGS(p, max_iter=2, n_correction=3, line_search="strong_wolfe"),
}


class MiniBatchModel(Model):
    """A 'stochastic' objective: a differently scaled Rosenbrock for every step, as a new
    mini-batch is (fixed within one step, so line searches see one function)."""

    def __init__(self, x0):
        super().__init__(x0, self._fun)

    def _fun(self, x):
        scale = 1 + 0.1 * math.sin(self.batch)
        f, g = rosenbrock(x)
        return scale * f, scale * g


@pytest.mark.parametrize("name", sorted(ALL_CASES))
@pytest.mark.parametrize("via_npz", [False, True])
def test_state_dict_resume_is_bitwise(name, via_npz, tmp_path):
    make = ALL_CASES[name]
    x0 = np.linspace(-1.0, 0.8, 6)
    k, m = 5, 6

    model = MiniBatchModel(x0)
    opt = make(model.params)
    run(opt, model, k)
    state = opt.state_dict()
    saved_params, saved_batch = model.params.copy(), model.batch
    losses_a = run(opt, model, m)
    end_a = model.params.copy()
    assert not np.array_equal(end_a, saved_params), "the resumed steps must move params"

    if via_npz:
        np.savez(tmp_path / "opt.npz", **state)
        with np.load(tmp_path / "opt.npz") as z:
            state = {key: z[key] for key in z.files}
    model_b = MiniBatchModel(saved_params)
    model_b.batch = saved_batch
    opt_b = type(opt)(model_b.params)     # default hyperparameters: the state restores them
    opt_b.load_state_dict(state)
    losses_b = run(opt_b, model_b, m)
    assert losses_a == losses_b
    np.testing.assert_array_equal(model_b.params, end_a)
    assert opt_b.state_dict().keys() == opt.state_dict().keys()


def test_state_dict_is_a_snapshot():
    x = np.zeros(3)
    opt = SGD(x, lr=0.1, momentum=0.9)
    opt.step(lambda: (0.0, np.ones(3)))
    state = opt.state_dict()
    opt.step(lambda: (0.0, np.ones(3)))
    assert state["n_updates"] == 1
    np.testing.assert_array_equal(state["momentum_buffer"], np.ones(3))


def test_load_state_dict_rejects_other_optimizer():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="SGD"):
        ASGD(x).load_state_dict(SGD(x).state_dict())
    with pytest.raises(ValueError, match="shape"):
        ASGD(np.zeros(4)).load_state_dict(ASGD(x).state_dict())


# --------------------------------------------------------------------------- dtype, memory

F32_CASES = {
    "sgd": (lambda p: SGD(p, lr=0.1), 300),
    "asgd": (lambda p: ASGD(p, lr=0.1, lambd=0.0), 300),
    "cg": (lambda p: CG(p, max_iter=20, max_eval=40), 3),
    "lbfgs-fixed": (lambda p: LBFGS(p, max_iter=40), 1),
    "lbfgs-wolfe": (lambda p: LBFGS(p, max_iter=40, line_search="strong_wolfe"), 1),
}


@pytest.mark.parametrize("name", sorted(F32_CASES))
def test_float32_params(name, rng):
    """float32 stays float32 (no silent promotion) and converges to float32 accuracy."""
    quad = Quadratic(rng, dtype=np.float32)
    make, n_steps = F32_CASES[name]
    model = Model(np.zeros(8), quad.value_grad, dtype=np.float32)
    opt = make(model.params)
    run(opt, model, n_steps)
    assert model.params.dtype == np.float32
    for value in opt.state_dict().values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    np.testing.assert_allclose(model.params, quad.x_star, atol=1e-4)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_params_updated_in_place(name):
    model = Model(np.linspace(-1.0, 0.8, 6), rosenbrock)
    before_storage = model.storage.copy()
    opt = ALL_CASES[name](model.params)
    run(opt, model, 2)
    assert opt.params is model.params
    assert np.shares_memory(opt.params, model.storage)
    assert not np.array_equal(model.storage[1:-1], before_storage[1:-1])
    assert model.storage[0] == 0 and model.storage[-1] == 0   # nothing written outside


def test_closure_buffer_reuse_is_safe():
    """Closures may hand back one gradient buffer they overwrite on every call (as a model's
    grad storage is); optimizers that keep gradients must copy them."""
    x0 = np.linspace(-1.0, 0.8, 6)
    results = []
    for reuse in (False, True):
        buf = np.zeros(6)

        def closure():
            f, g = rosenbrock(params)
            if not reuse:
                return f, g
            buf[...] = g
            return f, buf
        for make in (lambda p: CG(p, max_iter=10),
                     lambda p: LBFGS(p, max_iter=10, line_search="strong_wolfe")):
            params = x0.copy()
            make(params).step(closure)
            results.append(params.copy())
    for a, b in zip(results[:2], results[2:]):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("cls", [SGD, ASGD, LBFGS])
@pytest.mark.parametrize("lr", [-1e-3, float("nan"), float("inf")])
def test_bad_lr(cls, lr):
    with pytest.raises(ValueError, match=r"lr must be"):
        cls(np.zeros(3), lr=lr)


@pytest.mark.parametrize("cls", [SGD, ASGD, CG, LBFGS])
def test_bad_params(cls):
    with pytest.raises(TypeError, match="params must be a 1-D numpy.ndarray; got list"):
        cls([0.0, 1.0])
    with pytest.raises(ValueError, match=r"params must be 1-D .*got shape \(2, 2\)"):
        cls(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="params must have dtype float32 or float64; got int64"):
        cls(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="params must not be empty"):
        cls(np.zeros(0))
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="params must be writeable"):
        cls(readonly)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"lr_decay": -1.0}, ValueError, "lr_decay must be >= 0"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay must be finite"),
    ({"momentum": -0.1}, ValueError, "momentum must be >= 0"),
    ({"lr": "0.1"}, TypeError, "lr must be a real number"),
    ({"lr": True}, TypeError, "lr must be a real number"),
    ({"nesterov": 1}, TypeError, "nesterov must be a bool"),
    ({"momentum": 0.9, "nesterov": True}, ValueError, "pass dampening=0"),
    ({"nesterov": True, "dampening": 0}, ValueError, "nesterov requires momentum > 0"),
])
def test_sgd_bad_hyperparameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SGD(np.zeros(3), **kwargs)


@pytest.mark.parametrize("cls,kwargs,exc,match", [
    (ASGD, {"lambd": -1}, ValueError, "lambd must be >= 0"),
    (ASGD, {"t0": float("nan")}, ValueError, "t0 must be finite"),
    (CG, {"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    (CG, {"max_iter": 2.5}, TypeError, "max_iter must be an integer"),
    (CG, {"rho": 0.6}, ValueError, "sig must be > 0.6"),
    (CG, {"ext": 1.0}, ValueError, "ext must be > 1"),
    (LBFGS, {"lr": 0.0}, ValueError, "lr must be > 0"),
    (LBFGS, {"n_correction": 0}, ValueError, "n_correction must be >= 1"),
    (LBFGS, {"line_search": "armijo"}, ValueError, "line_search must be None or"),
    (LBFGS, {"line_search_options": {"c3": 1}}, ValueError, "unknown line_search_options"),
    (LBFGS, {"line_search_options": {"c1": 0.5, "c2": 0.1}}, ValueError, r"c2'\] must be >"),
])
def test_other_bad_hyperparameters(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(np.zeros(3), **kwargs)


@pytest.mark.parametrize("cls", [SGD, ASGD, CG, LBFGS])
def test_bad_closure(cls):
    opt = cls(np.zeros(3))
    with pytest.raises(ValueError, match=r"gradient of shape \(2,\); expected \(3,\)"):
        opt.step(lambda: (1.0, np.zeros(2)))
    with pytest.raises(TypeError, match="closure must return a tuple"):
        opt.step(lambda: 1.0)


# --------------------------------------------------------------------------- schedule

def test_switch_schedule():
    params = np.zeros(3)
    built = []

    def factory():
        built.append(LBFGS(params, lr=1e-3, max_iter=2))
        return built[-1]
    sgd = SGD(params)
    schedule = SwitchSchedule(sgd, factory, switch_after_epoch=2)
    assert schedule.optimizer_for_epoch(1) is sgd
    assert schedule.optimizer_for_epoch(2) is sgd
    assert not built and "second.optimizer" not in schedule.state_dict()
    lbfgs = schedule.optimizer_for_epoch(3)
    assert isinstance(lbfgs, LBFGS) and schedule.optimizer_for_epoch(9) is lbfgs
    assert len(built) == 1
    with pytest.raises(ValueError, match="epoch must be >= 1"):
        schedule.optimizer_for_epoch(0)
    with pytest.raises(TypeError, match="second_factory must be callable"):
        SwitchSchedule(sgd, None, 1)
    with pytest.raises(ValueError, match="switch_after_epoch must be >= 0"):
        SwitchSchedule(sgd, factory, -1)


def test_switch_schedule_resume_is_bitwise():
    """SGD for 2 epochs then L-BFGS; checkpoint in epoch 3, resume in a fresh schedule."""
    def make(params):
        return SwitchSchedule(SGD(params, lr=1e-3, momentum=0.5),
                              lambda: LBFGS(params, lr=1e-2, max_iter=2), switch_after_epoch=2)
    x0 = np.linspace(-1.0, 0.8, 6)
    model = Model(x0, rosenbrock)
    schedule = make(model.params)
    for epoch in (1, 2, 3):
        run(schedule.optimizer_for_epoch(epoch), model, 4)
    state, saved = schedule.state_dict(), model.params.copy()
    assert state["first.optimizer"] == "SGD" and state["second.optimizer"] == "LBFGS"
    for epoch in (4, 5):
        run(schedule.optimizer_for_epoch(epoch), model, 4)

    model_b = Model(saved, rosenbrock)
    schedule_b = make(model_b.params)
    schedule_b.load_state_dict(state)
    for epoch in (4, 5):
        run(schedule_b.optimizer_for_epoch(epoch), model_b, 4)
    np.testing.assert_array_equal(model_b.params, model.params)
