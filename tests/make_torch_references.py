"""Write tests/data/torch_optim_reference.npz: PyTorch's optimizer trajectories and
learning-rate sequences on the fixed cases of tests/torch_optim_cases.py.

Usage::

    python tests/make_torch_references.py

Run once, with torch installed, whenever a case is added or changed; CI has no torch, so
tests/test_adam.py and tests/test_lr_schedules.py compare fastconv against this file (and
against live torch too when it imports). Keys: ``optim__<case>`` (parameters after 0..100
updates, float32), ``lr__<case>`` and ``momentum__<case>`` (float64), ``torch_version``.
"""
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.torch_optim_cases import (OPTIMIZER_CASES, REFERENCE, SCHEDULE_CASES,  # noqa: E402
                                     run_torch_optimizer, run_torch_schedule)


def main():
    import torch
    arrays = {"torch_version": np.array(torch.__version__)}
    for case in OPTIMIZER_CASES:
        arrays[f"optim__{case}"] = run_torch_optimizer(case)
    with warnings.catch_warnings():
        # SequentialLR passes an epoch to CosineAnnealingLR.step internally, which warns.
        warnings.simplefilter("ignore", UserWarning)
        for case in SCHEDULE_CASES:
            lrs, momenta = run_torch_schedule(case)
            arrays[f"lr__{case}"] = lrs
            if momenta is not None:
                arrays[f"momentum__{case}"] = momenta
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes, torch {torch.__version__})")


if __name__ == "__main__":
    main()
