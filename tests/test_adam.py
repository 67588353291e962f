"""Adam, AdamW and PyTorch-style Nesterov SGD against PyTorch's update sequences (from the
committed fixture always, live when torch imports), plus resume and validation."""
import numpy as np
import pytest

from fastconv.optim import SGD, Adam, AdamW

from .torch_optim_cases import (OPTIMIZER_CASES, REFERENCE, problem, run_fastconv_optimizer,
                                run_torch_optimizer, value_grad)

EPS32 = float(np.finfo(np.float32).eps)


def assert_float32_close(ours, ref):
    """Agreement to float32 rounding: PyTorch fuses multiply-adds (FMA) and its float32 sqrt
    is not correctly rounded, so single elements differ by an ulp, and the differences then
    propagate through 100 updates; 8 ulps of the trajectory's scale leaves room for that
    while any change to the formulas (a moved eps, a missing bias correction) is far
    larger."""
    assert ours.shape == ref.shape
    scale = np.max(np.abs(ref))
    err = np.max(np.abs(ours.astype(np.float64) - ref))
    assert err <= 8 * EPS32 * scale, f"max |diff| {err:.3g} > 8 ulps of {scale:.3g}"


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as d:
        return dict(d)


@pytest.mark.parametrize("case", list(OPTIMIZER_CASES))
def test_matches_torch_fixture(case, reference):
    assert_float32_close(run_fastconv_optimizer(case), reference[f"optim__{case}"])


@pytest.mark.parametrize("case", list(OPTIMIZER_CASES))
def test_matches_live_torch(case):
    pytest.importorskip("torch")
    assert_float32_close(run_fastconv_optimizer(case), run_torch_optimizer(case))


def test_cases_move_the_parameters(reference):
    # A comparison of two runs that stay at x0 would prove nothing.
    for case in OPTIMIZER_CASES:
        traj = reference[f"optim__{case}"]
        assert np.max(np.abs(traj[-1] - traj[0])) > 0.5, case


def test_first_step_by_hand():
    # t = 1: m = (1 - b1) g and v = (1 - b2) g^2, which the bias corrections undo: the step
    # is lr * g / (|g| + eps), i.e. lr * sign(g) for |g| >> eps.
    x = np.array([1.0, -2.0, 3.0])
    g = np.array([0.5, -4.0, 1e-3])
    opt = Adam(x, lr=0.1)
    opt.step(lambda: (0.0, g))
    np.testing.assert_allclose(x, [1.0, -2.0, 3.0] - 0.1 * g / (np.abs(g) + 1e-8),
                               rtol=1e-12)


def test_adamw_decouples_weight_decay():
    # With a zero gradient Adam's moments stay 0 and only the decay acts: x *= 1 - lr wd.
    x = np.array([2.0, -1.0])
    opt = AdamW(x, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step(lambda: (0.0, np.zeros(2)))
    np.testing.assert_allclose(x, np.array([2.0, -1.0]) * 0.95 ** 3, rtol=1e-15)
    # Adam's L2 decay goes through the moments instead: the first step is lr * sign(x).
    y = np.array([2.0, -1.0])
    Adam(y, lr=0.1, weight_decay=0.5).step(lambda: (0.0, np.zeros(2)))
    np.testing.assert_allclose(y, [1.9, -0.9], rtol=1e-6)


def test_float64_params_and_no_allocation_growth():
    A, b, x0 = problem()
    x = x0.astype(np.float64)
    opt = Adam(x, lr=1e-2, amsgrad=True)
    opt.step(lambda: value_grad(A, b, x))
    scratch = [id(s) for s in opt._scratch]
    for _ in range(5):
        opt.step(lambda: value_grad(A, b, x))
    assert [id(s) for s in opt._scratch] == scratch
    assert opt.exp_avg.dtype == x.dtype == np.float64


def test_beta1_and_lr_are_settable():
    opt = Adam(np.zeros(3, np.float32))
    opt.beta1, opt.lr = 0.85, 0.5
    assert opt.betas == (0.85, 0.999) and opt.lr == 0.5
    with pytest.raises(ValueError, match=r"Adam: beta1 must be < 1.0; got 1.0"):
        opt.beta1 = 1.0


@pytest.mark.parametrize("cls, kwargs", [(Adam, {}), (AdamW, {}),
                                          (Adam, dict(weight_decay=0.1, amsgrad=True)),
                                          (AdamW, dict(amsgrad=True, betas=(0.3, 0.9)))])
def test_state_dict_resumes_bit_for_bit(cls, kwargs, tmp_path):
    A, b, x0 = problem()
    x = x0.copy()
    whole = cls(x, lr=1e-2, **kwargs)
    for _ in range(20):
        whole.step(lambda: value_grad(A, b, x))
    expected = x.copy()

    y = x0.copy()
    first = cls(y, lr=1e-2, **kwargs)
    for _ in range(10):
        first.step(lambda: value_grad(A, b, y))
    np.savez(tmp_path / "state.npz", **first.state_dict())
    # A fresh optimizer with other hyperparameters: the state carries them.
    second = cls(y, lr=0.5, betas=(0.5, 0.5), amsgrad=not kwargs.get("amsgrad", False))
    with np.load(tmp_path / "state.npz") as d:
        second.load_state_dict(dict(d))
    for _ in range(10):
        second.step(lambda: value_grad(A, b, y))
    np.testing.assert_array_equal(y, expected)


def test_state_dict_refuses_other_optimizer():
    x = np.zeros(3)
    with pytest.raises(ValueError, match=r"AdamW.load_state_dict: state belongs to optimizer "
                                         r"'Adam'"):
        AdamW(x).load_state_dict(Adam(x).state_dict())
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: exp_avg has shape \(4,\)"):
        Adam(x).load_state_dict(Adam(np.zeros(4)).state_dict())


@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(lr=-1.0), ValueError, r"Adam: lr must be >= 0.0; got -1.0"),
    (dict(lr="0.1"), TypeError, r"Adam: lr must be a real number; got str '0.1'"),
    (dict(betas=(0.9,)), TypeError, r"Adam: betas must be a pair \(beta1, beta2\); got \(0.9,\)"),
    (dict(betas=(1.0, 0.9)), ValueError, r"Adam: betas\[0\] must be < 1.0; got 1.0"),
    (dict(betas=(0.9, -0.1)), ValueError, r"Adam: betas\[1\] must be >= 0.0; got -0.1"),
    (dict(eps=float("nan")), ValueError, r"Adam: eps must be finite; got nan"),
    (dict(weight_decay=-1e-3), ValueError, r"Adam: weight_decay must be >= 0.0; got -0.001"),
    (dict(amsgrad=1), TypeError, r"Adam: amsgrad must be a bool; got int"),
])
def test_invalid_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message) as info:
        Adam(np.zeros(3), **kwargs)
    assert "\n" not in str(info.value)


def test_invalid_params_named_by_class():
    with pytest.raises(TypeError, match=r"AdamW: params must have dtype float32 or float64"):
        AdamW(np.zeros(3, dtype=np.int64))


def test_sgd_nesterov_case_is_pytorch_sgd():
    # The fixture's SGD case must be PyTorch's SGD, not Torch7's defaults.
    cls, kwargs = OPTIMIZER_CASES["sgd_nesterov"][:2]
    opt = SGD(np.zeros(2, np.float32), **kwargs)
    assert cls == "SGD" and opt.lr_decay == 0 and opt.dampening == 0 and opt.nesterov
