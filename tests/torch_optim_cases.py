"""The fixed problems behind tests/data/torch_optim_reference.npz, shared by the script that
writes it (tests/make_torch_references.py) and the tests that read it (tests/test_adam.py,
tests/test_lr_schedules.py), which also rerun the PyTorch side live when torch imports.

Optimizers run N_STEPS updates on one small least-squares problem. Its gradient is computed
in float64 from the current float32 parameters and rounded to float32, by the same NumPy
code on both sides, so the two runs differ only by the optimizers' own rounding.
Schedules give N_STEPS learning rates (and one-cycle's momenta) from base lr BASE_LR.
"""
import math
from pathlib import Path

import numpy as np

N_STEPS = 100
BASE_LR = 0.1
REFERENCE = Path(__file__).resolve().parent / "data" / "torch_optim_reference.npz"


def problem():
    """Return ``(A, b, x0)``: a 40 x 16 least-squares problem and its float32 start."""
    rng = np.random.default_rng(20240917)
    A = rng.standard_normal((40, 16))
    b = rng.standard_normal(40)
    x0 = rng.standard_normal(16).astype(np.float32)
    return A, b, x0


def value_grad(A, b, x):
    """``0.5 * mean((A x - b)**2)`` and its gradient rounded to x's dtype."""
    r = A @ x.astype(np.float64) - b
    return 0.5 * np.mean(r * r), (A.T @ r / len(b)).astype(x.dtype)


def _hyper_sequence():
    # Per-step lr and beta1, as a one-cycle schedule would set them. beta1 dips below 0.5 so
    # PyTorch's lerp takes both of its forms (weight 1 - beta1 below and above 0.5).
    lrs = [0.02 * (1 + math.cos(math.pi * t / N_STEPS)) / 2 + 1e-3 for t in range(N_STEPS)]
    beta1s = [0.3 + 0.65 * (t % 10) / 10 for t in range(N_STEPS)]
    return lrs, beta1s


# name: (fastconv class, fastconv kwargs, torch class, torch kwargs, scheduled)
OPTIMIZER_CASES = {
    "adam": ("Adam", dict(lr=1e-2), "Adam", dict(lr=1e-2), False),
    "adam_l2_amsgrad": ("Adam", dict(lr=1e-2, weight_decay=0.1, amsgrad=True),
                        "Adam", dict(lr=1e-2, weight_decay=0.1, amsgrad=True), False),
    "adamw": ("AdamW", dict(lr=1e-2, weight_decay=0.1),
              "AdamW", dict(lr=1e-2, weight_decay=0.1), False),
    "adamw_amsgrad": ("AdamW", dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.5,
                                    amsgrad=True),
                      "AdamW", dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.5,
                                    amsgrad=True), False),
    "adamw_scheduled": ("AdamW", dict(lr=1e-2, weight_decay=0.05),
                        "AdamW", dict(lr=1e-2, weight_decay=0.05), True),
    # fastconv's SGD has Torch7 defaults (lr_decay, dampening = momentum); these give
    # PyTorch's SGD.
    "sgd_nesterov": ("SGD", dict(lr=1e-2, lr_decay=0.0, momentum=0.9, dampening=0.0,
                                 nesterov=True, weight_decay=1e-3),
                     "SGD", dict(lr=1e-2, momentum=0.9, dampening=0.0, nesterov=True,
                                 weight_decay=1e-3), False),
}


def run_fastconv_optimizer(case, n_steps=N_STEPS, opt=None, x=None):
    """Parameters after 0..n_steps updates, shape (n_steps + 1, 16), float32."""
    import fastconv.optim as optim
    cls, kwargs, _, _, scheduled = OPTIMIZER_CASES[case]
    A, b, x0 = problem()
    if x is None:
        x = x0.copy()
    if opt is None:
        opt = getattr(optim, cls)(x, **kwargs)
    lrs, beta1s = _hyper_sequence()
    out = [x.copy()]
    for t in range(n_steps):
        if scheduled:
            opt.lr, opt.beta1 = lrs[t], beta1s[t]
        opt.step(lambda: value_grad(A, b, x))
        out.append(x.copy())
    return np.array(out)


def run_torch_optimizer(case):
    """The same run with torch.optim (foreach=False: the single-tensor implementation)."""
    import torch
    _, _, cls, kwargs, scheduled = OPTIMIZER_CASES[case]
    A, b, x0 = problem()
    p = torch.nn.Parameter(torch.from_numpy(x0.copy()))
    opt = getattr(torch.optim, cls)([p], foreach=False, **kwargs)
    lrs, beta1s = _hyper_sequence()
    out = [x0.copy()]
    for t in range(N_STEPS):
        if scheduled:
            group = opt.param_groups[0]
            group["lr"] = lrs[t]
            group["betas"] = (beta1s[t], group["betas"][1])
        x = p.detach().numpy()
        p.grad = torch.from_numpy(value_grad(A, b, x)[1])
        opt.step()
        out.append(p.detach().numpy().copy())
    return np.array(out)


# A validation metric that improves, stalls, improves a little (below and above the
# threshold), and is noisy: every branch of ReduceLROnPlateau is taken.
def plateau_metrics():
    rng = np.random.default_rng(7)
    m = np.concatenate([np.linspace(1.0, 0.5, 15), np.full(10, 0.5),
                        np.linspace(0.5, 0.499, 10), np.linspace(0.499, 0.3, 20),
                        0.3 + 0.01 * rng.standard_normal(45)])
    return [float(v) for v in m]


# name: (fastconv build_schedule name, options, torch builder(opt) -> scheduler, optimizer)
def _torch_cosine(total, warmup, start_factor, eta_min):
    def build(torch, opt):
        S = torch.optim.lr_scheduler
        if warmup == 0:
            return S.CosineAnnealingLR(opt, T_max=total, eta_min=eta_min)
        return S.SequentialLR(opt, [S.LinearLR(opt, start_factor=start_factor, end_factor=1.0,
                                               total_iters=warmup),
                                    S.CosineAnnealingLR(opt, T_max=total - warmup,
                                                        eta_min=eta_min)],
                              milestones=[warmup])
    return build


SCHEDULE_CASES = {
    "step": ("step", dict(step_size=7, gamma=0.5),
             lambda torch, opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)),
    "multistep": ("multistep", dict(milestones=[60, 10, 25, 25], gamma=0.3),
                  lambda torch, opt: torch.optim.lr_scheduler.MultiStepLR(
                      opt, milestones=[60, 10, 25, 25], gamma=0.3)),
    "exponential": ("exponential", dict(gamma=0.95),
                    lambda torch, opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.95)),
    "cosine": ("cosine", dict(total=N_STEPS, eta_min=1e-3), _torch_cosine(N_STEPS, 0, 1, 1e-3)),
    "cosine_warmup": ("cosine", dict(total=N_STEPS, warmup=10, warmup_start_factor=0.1,
                                     eta_min=1e-4),
                      _torch_cosine(N_STEPS, 10, 0.1, 1e-4)),
    "onecycle": ("onecycle", dict(max_lr=0.5, total_steps=N_STEPS),
                 lambda torch, opt: torch.optim.lr_scheduler.OneCycleLR(
                     opt, max_lr=0.5, total_steps=N_STEPS)),
    "onecycle_linear_3phase": (
        "onecycle", dict(max_lr=0.5, total_steps=N_STEPS, pct_start=0.25,
                         anneal_strategy="linear", three_phase=True, div_factor=10.0,
                         final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
        lambda torch, opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.5, total_steps=N_STEPS, pct_start=0.25, anneal_strategy="linear",
            three_phase=True, div_factor=10.0, final_div_factor=100.0, base_momentum=0.8,
            max_momentum=0.9)),
    "plateau": ("plateau", dict(factor=0.5, patience=3, threshold=1e-2, cooldown=2,
                                min_lr=5e-3),
                lambda torch, opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
                    opt, factor=0.5, patience=3, threshold=1e-2, cooldown=2, min_lr=5e-3)),
    "plateau_max_abs": ("plateau", dict(mode="max", threshold_mode="abs", threshold=1e-3,
                                        patience=2),
                        lambda torch, opt: torch.optim.lr_scheduler.ReduceLROnPlateau(
                            opt, mode="max", threshold_mode="abs", threshold=1e-3,
                            patience=2)),
}

PLATEAU_METRIC_SIGN = {"plateau": 1.0, "plateau_max_abs": -1.0}
BASE_MOMENTUM = 0.9


def run_fastconv_schedule(case, n_steps=N_STEPS, schedule=None, start=0):
    """``(lrs, momenta)`` for intervals ``start .. n_steps - 1``; momenta None when the
    schedule does not set it. Plateau schedules observe ``plateau_metrics`` after each."""
    from fastconv.optim import build_schedule
    name, options, _ = SCHEDULE_CASES[case]
    if schedule is None:
        schedule = build_schedule(name, **options).bind(BASE_LR, 1, BASE_MOMENTUM)
    metrics = plateau_metrics()
    lrs, momenta = [], []
    for t in range(start, n_steps):
        lrs.append(schedule.lr_at(t))
        momenta.append(schedule.momentum_at(t))
        if name == "plateau":
            schedule.observe(PLATEAU_METRIC_SIGN[case] * metrics[t])
    has_momentum = any(m is not None for m in momenta)
    return np.array(lrs), (np.array(momenta) if has_momentum else None)


def run_torch_schedule(case):
    """The PyTorch schedule's sequence, stepped as its documentation says: once per
    interval, after the optimizer step; ReduceLROnPlateau with the epoch's metric."""
    import torch
    name, _, build = SCHEDULE_CASES[case]
    p = torch.nn.Parameter(torch.zeros(1))
    # Adam for one-cycle, so that the momentum cycles through betas[0] as with fastconv's.
    if name == "onecycle":
        opt = torch.optim.Adam([p], lr=BASE_LR, betas=(BASE_MOMENTUM, 0.999))
    else:
        opt = torch.optim.SGD([p], lr=BASE_LR, momentum=BASE_MOMENTUM)
    sched = build(torch, opt)
    metrics = plateau_metrics()
    lrs, momenta = [], []
    for t in range(N_STEPS):
        group = opt.param_groups[0]
        lrs.append(float(group["lr"]))
        momenta.append(float(group["betas"][0]) if "betas" in group else None)
        opt.step()
        if name == "plateau":
            sched.step(PLATEAU_METRIC_SIGN[case] * metrics[t])
        else:
            sched.step()
    return np.array(lrs), (np.array(momenta) if name == "onecycle" else None)
