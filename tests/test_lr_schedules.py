"""Learning-rate schedules against PyTorch's sequences (committed fixture always, live torch
when it imports), the bind/lr_at interface, resume mid-run, and every validation branch."""
import json
import math
import warnings

import numpy as np
import pytest

from fastconv.optim import (SCHEDULES, CosineLR, ExponentialLR, MultiStepLR, OneCycleLR,
                            ReduceLROnPlateau, StepLR, build_schedule)

from .torch_optim_cases import (BASE_LR, BASE_MOMENTUM, REFERENCE, SCHEDULE_CASES,
                                run_fastconv_schedule, run_torch_schedule)

# PyTorch's chainable schedules multiply the previous lr every step, the closed forms here
# do not: the two round differently, by a few units in the last place of a double.
RTOL = 1e-13


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as d:
        return dict(d)


def check_against(case, lrs, momenta):
    ours_lr, ours_m = run_fastconv_schedule(case)
    np.testing.assert_allclose(ours_lr, lrs, rtol=RTOL, atol=0)
    if momenta is None:
        assert ours_m is None
    else:
        np.testing.assert_allclose(ours_m, momenta, rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_matches_torch_fixture(case, reference):
    check_against(case, reference[f"lr__{case}"], reference.get(f"momentum__{case}"))


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_matches_live_torch(case):
    pytest.importorskip("torch")
    with warnings.catch_warnings():
        # SequentialLR hands CosineAnnealingLR an epoch, which PyTorch itself deprecates.
        warnings.simplefilter("ignore", UserWarning)
        lrs, momenta = run_torch_schedule(case)
    check_against(case, lrs, momenta)


def test_every_case_changes_the_lr(reference):
    for case in SCHEDULE_CASES:
        assert len(np.unique(reference[f"lr__{case}"])) >= 3, case


def test_registry_and_intervals():
    assert list(SCHEDULES) == ["step", "multistep", "exponential", "cosine", "onecycle",
                               "plateau"]
    assert {n for n, c in SCHEDULES.items() if c.interval == "step"} == {"cosine", "onecycle"}
    assert {c.interval for c in SCHEDULES.values()} == {"step", "epoch"}


def test_closed_forms():
    s = StepLR(3, gamma=0.5).bind(1.0, 7)
    assert [s.lr_at(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    m = MultiStepLR([4, 2, 4], gamma=0.1).bind(2.0, 7)
    assert m.milestones == [2, 4, 4]
    np.testing.assert_allclose([m.lr_at(t) for t in range(6)],
                               [2, 2, 0.2, 0.2, 2e-3, 2e-3], rtol=1e-15)
    e = ExponentialLR(0.5).bind(1.0, 7)
    assert e.lr_at(3) == 0.125 and e.momentum_at(3) is None


def test_cosine_warmup_and_tail():
    c = CosineLR(total=10, warmup=4, warmup_start_factor=0.0, eta_min=0.01).bind(1.0, 3)
    lrs = [c.lr_at(t) for t in range(14)]
    assert lrs[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert lrs[7] == pytest.approx(0.01 + 0.99 * 0.5)
    assert lrs[10:] == [0.01] * 4
    assert c.momentum_at(0) is None
    # warmup == total: all warmup, then eta_min.
    w = CosineLR(total=2, warmup=2).bind(0.3, 1)
    assert [w.lr_at(t) for t in range(3)] == pytest.approx([0.1, 0.2, 0.0], rel=1e-15)


def test_lengths_in_epochs_resolve_at_bind():
    by_epochs = CosineLR(epochs=5, warmup_epochs=1, eta_min=1e-3)
    assert by_epochs.total_steps is None
    by_epochs.bind(0.1, 13)
    by_steps = CosineLR(total=65, warmup=13, eta_min=1e-3).bind(0.1, 13)
    assert (by_epochs.total_steps, by_epochs.warmup_steps) == (65, 13)
    assert [by_epochs.lr_at(t) for t in range(70)] == [by_steps.lr_at(t) for t in range(70)]
    one_e = OneCycleLR(0.5, epochs=4).bind(0.1, 25, BASE_MOMENTUM)
    one_s = OneCycleLR(0.5, total_steps=100).bind(0.1, 7, BASE_MOMENTUM)
    assert ([(one_e.lr_at(t), one_e.momentum_at(t)) for t in range(101)]
            == [(one_s.lr_at(t), one_s.momentum_at(t)) for t in range(101)])
    # Steps may be given with warmup in epochs.
    mixed = CosineLR(total=100, warmup_epochs=2).bind(0.1, 10)
    assert (mixed.total_steps, mixed.warmup_steps) == (100, 20)


def test_onecycle_ends_and_limits():
    s = OneCycleLR(1.0, total_steps=10, div_factor=10.0, final_div_factor=100.0)
    s.bind(0.0, 1, 0.9)
    assert s.lr_at(0) == pytest.approx(0.1, rel=1e-15) and s.momentum_at(0) == 0.95
    assert s.lr_at(9) == pytest.approx(1e-3)
    s.lr_at(10)  # PyTorch computes the lr after the last update too
    with pytest.raises(ValueError, match=r"OneCycleLR: t=11 is past the schedule's 10 steps"):
        s.lr_at(11)
    # pct_start * total_steps == 1 makes a one-point first phase (PyTorch divides by 0).
    z = OneCycleLR(1.0, total_steps=10, pct_start=0.1).bind(0.0, 1, 0.9)
    assert z.lr_at(0) == 1.0 and z.momentum_at(0) == 0.85
    no_m = OneCycleLR(1.0, total_steps=10, cycle_momentum=False).bind(0.0, 1)
    assert no_m.momentum_at(3) is None


def test_plateau_nan_is_a_bad_epoch_and_observe_returns_lr():
    p = ReduceLROnPlateau(patience=0, factor=0.5).bind(1.0, 1)
    assert p.observe(1.0) == 1.0
    assert p.observe(float("nan")) == 0.5
    assert p.lr_at(123) == 0.5 and p.last_epoch == 2
    assert p.observe(np.float32(0.5)) == 0.5
    with pytest.raises(TypeError, match=r"ReduceLROnPlateau: metric must be a real number; "
                                        r"got bool True"):
        p.observe(True)
    with pytest.raises(RuntimeError, match=r"call bind"):
        ReduceLROnPlateau().observe(1.0)


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_state_dict_resumes_bit_for_bit(case, tmp_path):
    name, options, _ = SCHEDULE_CASES[case]
    whole_lr, whole_m = run_fastconv_schedule(case)

    first = build_schedule(name, **options).bind(BASE_LR, 1, BASE_MOMENTUM)
    run_fastconv_schedule(case, n_steps=40, schedule=first)
    np.savez(tmp_path / "state.npz", **first.state_dict())
    settings = json.loads(json.dumps(first.settings()))
    second = build_schedule(settings.pop("name"), **settings).bind(BASE_LR, 1, BASE_MOMENTUM)
    with np.load(tmp_path / "state.npz") as d:
        second.load_state_dict(dict(d))
    rest_lr, rest_m = run_fastconv_schedule(case, schedule=second, start=40)
    np.testing.assert_array_equal(rest_lr, whole_lr[40:])
    if whole_m is not None:
        np.testing.assert_array_equal(rest_m, whole_m[40:])


def test_state_dict_refuses_other_settings_schedule_or_binding():
    saved = StepLR(3).bind(0.1, 10).state_dict()
    with pytest.raises(ValueError, match=r"StepLR.load_state_dict: state was saved with "
                                         r"step_size=3; this schedule has step_size=4"):
        StepLR(4).bind(0.1, 10).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"state was saved with base_lr=0.1; this schedule "
                                         r"has base_lr=0.2"):
        StepLR(3).bind(0.2, 10).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"ExponentialLR.load_state_dict: state belongs to "
                                         r"schedule 'step', not 'exponential'"):
        ExponentialLR(0.5).bind(0.1, 10).load_state_dict(saved)
    with pytest.raises(RuntimeError, match=r"StepLR.load_state_dict: call bind"):
        StepLR(3).load_state_dict(saved)
    cos = CosineLR(epochs=3).bind(0.1, 10).state_dict()
    with pytest.raises(ValueError, match=r"state was saved with total=None; this schedule "
                                         r"has total=30"):
        CosineLR(total=30).bind(0.1, 10).load_state_dict(cos)
    # steps_per_epoch matters only where a length is in epochs.
    with pytest.raises(ValueError, match=r"state was saved with steps_per_epoch=10; this "
                                         r"schedule has steps_per_epoch=11"):
        CosineLR(epochs=3).bind(0.1, 11).load_state_dict(cos)
    CosineLR(total=30).bind(0.1, 11).load_state_dict(CosineLR(total=30).bind(0.1, 10)
                                                     .state_dict())
    StepLR(3).bind(0.1, 11).load_state_dict(saved)
    # One-cycle's scale is max_lr: the optimizer's own lr may differ on resume.
    one = OneCycleLR(0.5, total_steps=9).bind(0.1, 1, 0.9).state_dict()
    OneCycleLR(0.5, total_steps=9).bind(0.3, 1, 0.9).load_state_dict(one)


def test_lr_at_needs_bind_and_a_count():
    with pytest.raises(RuntimeError, match=r"CosineLR: call bind\(base_lr, steps_per_epoch\)"):
        CosineLR(total=10).lr_at(0)
    s = StepLR(2).bind(0.1, 1)
    with pytest.raises(ValueError, match=r"StepLR: t must be >= 0; got -1"):
        s.lr_at(-1)
    with pytest.raises(ValueError, match=r"StepLR: steps_per_epoch must be >= 1; got 0"):
        s.bind(0.1, 0)
    with pytest.raises(ValueError, match=r"OneCycleLR: cycle_momentum=True needs an optimizer "
                                         r"with momentum or beta1; bind got base_momentum=None"):
        OneCycleLR(0.1, total_steps=10).bind(0.1, 1)


@pytest.mark.parametrize("name, options, exc, message", [
    ("cyclic", {}, ValueError, r"unknown schedule 'cyclic'; choose from \['step', "),
    ("step", dict(step_size=2, gama=0.5), ValueError,
     r"schedule 'step': unknown option 'gama'; expected some of \['step_size', 'gamma'\]"),
    ("onecycle", dict(total_steps=10), ValueError,
     r"schedule 'onecycle': missing required option 'max_lr'"),
    ("step", dict(step_size=0), ValueError, r"StepLR: step_size must be >= 1; got 0"),
    ("step", dict(step_size=2.5), TypeError, r"StepLR: step_size must be an integer"),
    ("step", dict(step_size=2, gamma=0.0), ValueError, r"StepLR: gamma must be > 0.0; got 0.0"),
    ("multistep", dict(milestones=5), TypeError,
     r"MultiStepLR: milestones must be a sequence of ints; got int"),
    ("multistep", dict(milestones=[3, -1]), ValueError,
     r"MultiStepLR: milestones\[\] must be >= 0; got -1"),
    ("exponential", dict(gamma=-0.5), ValueError, r"ExponentialLR: gamma must be > 0.0"),
    ("cosine", dict(), ValueError, r"CosineLR: give total \(in steps\) or epochs; got neither"),
    ("cosine", dict(total=10, epochs=2), ValueError,
     r"CosineLR: give total \(in steps\) or epochs, not both; got total=10, epochs=2"),
    ("cosine", dict(total=10, warmup=11), ValueError,
     r"CosineLR: warmup must not exceed the total length; got warmup 11 steps > total 10"),
    ("cosine", dict(total=10, warmup=2, warmup_epochs=1), ValueError,
     r"CosineLR: give warmup \(in steps\) or warmup_epochs, not both; got warmup=2, "
     r"warmup_epochs=1"),
    ("cosine", dict(total=10, warmup=-1), ValueError, r"CosineLR: warmup must be >= 0"),
    ("cosine", dict(epochs=0), ValueError, r"CosineLR: epochs must be >= 1; got 0"),
    ("cosine", dict(total=10, warmup_start_factor=1.5), ValueError,
     r"CosineLR: warmup_start_factor must be <= 1.0; got 1.5"),
    ("cosine", dict(total=10, eta_min=-1.0), ValueError, r"CosineLR: eta_min must be >= 0.0"),
    ("onecycle", dict(max_lr=0.0, total_steps=10), ValueError,
     r"OneCycleLR: max_lr must be > 0.0; got 0.0"),
    ("onecycle", dict(max_lr=0.1), ValueError,
     r"OneCycleLR: give total_steps \(in steps\) or epochs; got neither"),
    ("onecycle", dict(max_lr=0.1, total_steps=10, pct_start=1.2), ValueError,
     r"OneCycleLR: pct_start must be <= 1.0; got 1.2"),
    ("onecycle", dict(max_lr=0.1, total_steps=10, anneal_strategy="cosine"), ValueError,
     r"OneCycleLR: anneal_strategy must be one of \['cos', 'linear'\]; got 'cosine'"),
    ("onecycle", dict(max_lr=0.1, total_steps=10, three_phase="yes"), TypeError,
     r"OneCycleLR: three_phase must be a bool; got str"),
    ("onecycle", dict(max_lr=0.1, total_steps=10, max_momentum=1.0), ValueError,
     r"OneCycleLR: max_momentum must be < 1.0; got 1.0"),
    ("onecycle", dict(max_lr=0.1, total_steps=10, div_factor=0), ValueError,
     r"OneCycleLR: div_factor must be > 0.0; got 0.0"),
    ("plateau", dict(mode="minimum"), ValueError,
     r"ReduceLROnPlateau: mode must be one of \['min', 'max'\]; got 'minimum'"),
    ("plateau", dict(factor=1.0), ValueError, r"ReduceLROnPlateau: factor must be < 1.0"),
    ("plateau", dict(patience=-1), ValueError, r"ReduceLROnPlateau: patience must be >= 0"),
    ("plateau", dict(threshold_mode="relative"), ValueError,
     r"ReduceLROnPlateau: threshold_mode must be one of \['rel', 'abs'\]"),
    ("plateau", dict(min_lr=-1e-3), ValueError, r"ReduceLROnPlateau: min_lr must be >= 0.0"),
])
def test_invalid_options(name, options, exc, message):
    with pytest.raises(exc, match=message) as info:
        build_schedule(name, **options)
    assert "\n" not in str(info.value)


def test_settings_are_json_and_rebuild():
    for case, (name, options, _) in SCHEDULE_CASES.items():
        s = build_schedule(name, **options)
        settings = json.loads(json.dumps(s.settings()))
        assert settings["name"] == name
        rebuilt = build_schedule(settings.pop("name"), **settings)
        assert rebuilt.settings() == s.settings(), case
    assert math.isclose(CosineLR(total=5).settings()["warmup_start_factor"], 1 / 3)
