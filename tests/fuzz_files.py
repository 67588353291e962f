"""Fuzz the readers of model files, checkpoints and images with hostile inputs (run by
tests/test_fuzz_files.py).

Starting from small valid files (a saved model, a Trainer's checkpoint, a PNG digit and an
``.npy`` array), hypothesis flips, overwrites, inserts and truncates bytes (of the whole file,
or of one archive entry zipped again with a valid checksum, so that the damage reaches the
parsers), rewrites the model's and the checkpoint's JSON with hostile values (huge,
negative, wrong-typed, deleted or added settings), and rewrites ``.npy`` headers (shapes up to
2**62, odd dtypes). Every attempt to
open the result must either succeed or raise the documented error of its kind
(``ModelFileError``; ``CheckpointError`` or ``SettingsMismatch``; ``ImageError``), never
another exception. The process runs under an address-space limit, so that a file that makes
a reader allocate gigabytes fails too (as a MemoryError), and a crash kills the process: the
test that runs it in a subprocess fails.

Run as ``python -m tests.fuzz_files``. ``FASTCONV_FUZZ_EXAMPLES`` is the number of examples
per target (default 50, the CI profile: 450 examples over 9 targets); a count given there draws new
examples each run.
"""
import json
import os
import resource
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastconv import nn
from fastconv.datasets.images import ImageError, read_digit_images
from fastconv.serialization import ModelFileError, load_model
from fastconv.train import CheckpointError, SettingsMismatch, homework_trainer

from . import hostile_files as hf

EXAMPLES = int(os.environ.get("FASTCONV_FUZZ_EXAMPLES", "50"))
ADDRESS_SPACE = 3 * 2**30
config = settings(max_examples=EXAMPLES, deadline=None, database=None,
                  derandomize="FASTCONV_FUZZ_EXAMPLES" not in os.environ,
                  suppress_health_check=list(HealthCheck))
WORK = Path(tempfile.mkdtemp(prefix="fuzz_files_"))


# -- the valid starting points --------------------------------------------------------------
def _seeds():
    model = nn.Sequential(nn.Conv2d(1, 2, 5), nn.Tanh(), nn.MaxPool2d(2),
                          nn.BatchNorm2d(2, dtype=np.float32), nn.Flatten(),
                          nn.Linear(2 * 14 * 14, 10), nn.LogSoftmax())
    run = WORK / "run"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 32, 32)).astype(np.float32)
    homework_trainer(model, batch_size=4, lr=0.01, save_dir=str(run), verbose=False,
            metadata={"normalization": {"mean": 33.0, "std": 78.0}}).fit(
        x, rng.integers(0, 10, 8), epochs=1)
    a = np.zeros((28, 28), np.uint8)
    a[6:22, 12:16] = 255
    np.save(WORK / "digit.npy", a)
    from PIL import Image
    Image.fromarray(a).save(WORK / "digit.png")
    return {"model": (run / "model.npz").read_bytes(),
            "checkpoint": (run / "checkpoint.npz").read_bytes(),
            "png": (WORK / "digit.png").read_bytes(),
            "npy": (WORK / "digit.npy").read_bytes()}


SEEDS = _seeds()


def _trainer(folder):
    model = nn.Sequential(nn.Conv2d(1, 2, 5), nn.Tanh(), nn.MaxPool2d(2),
                          nn.BatchNorm2d(2, dtype=np.float32), nn.Flatten(),
                          nn.Linear(2 * 14 * 14, 10), nn.LogSoftmax())
    return homework_trainer(model, batch_size=4, lr=0.01, save_dir=str(folder), verbose=False)


# -- opening, and what each kind may raise -----------------------------------------------------
EXPECTED = {"model": (ModelFileError,), "checkpoint": (CheckpointError, SettingsMismatch),
            "png": (ImageError,), "npy": (ImageError,)}


def _open(kind, data):
    folder = Path(tempfile.mkdtemp(dir=WORK))
    try:
        name = {"model": "model.npz", "checkpoint": "checkpoint.npz", "png": "digit.png",
                "npy": "digit.npy"}[kind]
        path = folder / name
        path.write_bytes(data)
        try:
            if kind == "model":
                load_model(path, input_shape=(1, 32, 32), n_outputs=10)
            elif kind == "checkpoint":
                _trainer(folder).load_checkpoint()
            else:
                read_digit_images([path])
        except EXPECTED[kind] as exc:
            assert "\n" not in str(exc), f"a message of several lines: {exc}"
        except Exception as exc:
            raise AssertionError(f"{kind}: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- byte mutations ---------------------------------------------------------------------------
mutations = st.lists(st.tuples(st.sampled_from(["flip", "overwrite", "insert", "truncate",
                                                "zero"]),
                               st.floats(0, 1), st.binary(min_size=1, max_size=16)),
                     min_size=1, max_size=4)


def _mutate(data, program):
    data = bytearray(data)
    for op, where, blob in program:
        i = min(int(where * len(data)), max(len(data) - 1, 0))
        if op == "flip" and data:
            data[i] ^= blob[0] or 1
        elif op == "overwrite":
            data[i:i + len(blob)] = blob
        elif op == "insert":
            data[i:i] = blob
        elif op == "truncate":
            del data[i:]
        elif op == "zero":
            data[i:i + 8 * len(blob)] = bytes(len(data[i:i + 8 * len(blob)]))
    return bytes(data)


def run_bytes(kind, program):
    _open(kind, _mutate(SEEDS[kind], program))


def run_members(kind, index, program):
    """Mutate one entry of an archive and zip it again with a valid CRC, so that the damage
    reaches the .npy and JSON parsers instead of the zip's checksum."""
    members = _members(kind)
    names = sorted(members)
    name = names[index % len(names)]
    members[name] = _mutate(members[name], program)
    path = hf.write_zip(WORK / "members.npz", list(members.items()))
    _open(kind, path.read_bytes())


# -- the model's JSON and the .npy headers ---------------------------------------------------
HOSTILE = st.one_of(
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**63, 10**12, -(2**31), 1.5, float("nan"),
                     float("inf"), True, None, "", "7", [], [0], [2**31 - 1, 1], [1, 2, 3],
                     {}, {"type": "Linear"}, "float16", "object", [[1]], [None, None]]),
    st.integers(), st.text(max_size=8),
    st.lists(st.integers(-(2**40), 2**40), max_size=3))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _edit(obj, path, action, value):
    # A copy: hypothesis hands out the same list or dict object again, and one inserted into
    # itself would make a cycle.
    value = json.loads(json.dumps(value))
    if not path:
        return value if action == "set" else obj
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "set":
        parent[key] = value
    elif action == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[str(value)[:12]] = value
    else:
        parent.insert(key, value)
    return obj


def _members(kind="model"):
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(SEEDS[kind])) as z:
        return {n: z.read(n) for n in z.namelist()}


MODEL_MEMBERS = _members()
MODEL_CONFIG = json.loads(str(np.load(WORK / "run" / "model.npz")["__config__"]))


CHECKPOINT_MEMBERS = _members("checkpoint")
CHECKPOINT_META = json.loads(str(np.load(WORK / "run" / "checkpoint.npz")["__meta__"]))


def _edited(kind, edits):
    """The archive of ``kind`` with its JSON entry edited by ``edits``."""
    entry, original, members = {
        "model": ("__config__.npy", MODEL_CONFIG, MODEL_MEMBERS),
        "checkpoint": ("__meta__.npy", CHECKPOINT_META, CHECKPOINT_MEMBERS)}[kind]
    obj = json.loads(json.dumps(original))
    for where, action, value in edits:
        paths = list(_paths(obj))
        obj = _edit(obj, paths[int(where * (len(paths) - 1))], action, value)
    members = dict(members)
    members[entry] = hf.npy_bytes(np.array(json.dumps(obj)))
    return hf.write_zip(WORK / "edited.npz", list(members.items())).read_bytes()


def run_json(kind, edits):
    _open(kind, _edited(kind, edits))


DTYPES = ["<f4", "<f8", "<f2", "<i8", "|u1", "|b1", "<c16", "<M8[D]", "<m8[s]", "|V8",
          "<U4", "|S3", [("a", "<f8")], ">f4"]
shapes = st.lists(st.one_of(st.integers(0, 2**62), st.sampled_from([0, 1, 2, 10, 1024])),
                  max_size=4)


def run_header(entry_index, dtype, shape, keep_data):
    members = dict(MODEL_MEMBERS)
    names = sorted(members)
    name = names[entry_index % len(names)]
    old = members[name]
    header = hf.npy_header(shape, np.dtype(dtype) if isinstance(dtype, list) else dtype)
    data_start = len(hf.npy_header((), "<f4"))     # the stored arrays' headers are 128 bytes
    members[name] = header + (old[data_start:] if keep_data else b"")
    path = hf.write_zip(WORK / "headers.npz", list(members.items()))
    _open("model", path.read_bytes())
    npy = header + (SEEDS["npy"][data_start:] if keep_data else b"")
    _open("npy", npy)


def main():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    warnings.simplefilter("ignore")     # Pillow's and NumPy's warnings on damaged inputs
    try:
        for kind in ("model", "checkpoint", "png", "npy"):
            given(mutations)(config(lambda program: run_bytes(kind, program)))()
            print(f"{kind} bytes: {EXAMPLES} examples", flush=True)
        for kind in ("model", "checkpoint"):
            given(st.integers(0, 100), mutations)(
                config(lambda index, program: run_members(kind, index, program)))()
            print(f"{kind} entries: {EXAMPLES} examples", flush=True)
        edits = st.lists(st.tuples(st.floats(0, 1), st.sampled_from(["set", "delete", "add"]),
                                   HOSTILE), min_size=1, max_size=3)
        for kind in ("model", "checkpoint"):
            given(edits)(config(lambda e: run_json(kind, e)))()
            print(f"{kind} JSON: {EXAMPLES} examples", flush=True)
        given(st.integers(0, 100), st.sampled_from(DTYPES), shapes, st.booleans())(
            config(run_header))()
        print(f"npy headers: {EXAMPLES} examples", flush=True)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
