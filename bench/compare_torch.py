"""fastconv against PyTorch CPU on the homework's ConvNets, side by side (issue 5).

Usage (from the repository root)::

    python bench/compare_torch.py                    # check, then compare; ~3-4 min on 2 cores
    python bench/compare_torch.py --all              # + thread scaling and the env matrix
    python bench/compare_torch.py --threads-scaling  # n threads vs 1 at batch 1 and 128
    python bench/compare_torch.py --env-matrix       # OMP_NUM_THREADS x OPENBLAS_NUM_THREADS
    python bench/compare_torch.py --quick --output /tmp/x.json   # seconds; smoke test only
    python bench/compare_torch.py --busy             # a busy host: alone, beside a busy loop,
                                                     # two at once (bench/_busy.py); ~10 min
    python bench/compare_torch.py --baseline ../old  # this build against an older one, and the
                                                     # fast path against the validated one

PyTorch is optional (``pip install torch==2.13.0`` gives the CPU build); without it the script
says so and measures fastconv alone.

Models (float32, input N x 1 x 32 x 32, NLL loss, plain SGD with lr 1e-3)
--------------------------------------------------------------------------
* ``maxpool``: conv 5x5 1->64, tanh, max-pool 2x2/2, conv 5x5 64->64, tanh, max-pool 2x2/2,
  flatten 1600, linear 128, tanh, linear 10, log-softmax.
* ``convnet``: the homework's default, ``fastconv.nn.build_model("convnet")``: L2 pooling
  (``LPPool2d(2, 2x2/2)``) and Torch7's subtractive normalization (7-tap Gaussian) after each
  convolution. PyTorch side: ``F.lp_pool2d`` and one fixed 7x7 Gaussian ``conv2d`` of the
  channel sum, divided by the border coefficient (``bench/_torch_models.py``).

fastconv is driven through its public model API only (``nn.Sequential`` of layers,
``nn.NLLLoss``, ``optim.SGD`` over ``model.flat_parameters()`` with a closure), so whatever fast
path the layers select by themselves is what gets measured. PyTorch: ``nn.Sequential``,
``F.nll_loss``, ``torch.optim.SGD``, ``loss.backward()``; inference under
``torch.inference_mode()``. Both start from the same weights (fastconv's initialization,
copied into torch).

Method
------
1. **Ceiling.** A subprocess that imports neither fastconv nor torch times float32 GEMM on
   square ``--sgemm-size`` matrices with ``--threads`` threads: NumPy's ``matmul`` (NumPy's
   bundled OpenBLAS, limited with threadpoolctl) and ``scipy.linalg.blas.sgemm`` (SciPy's
   OpenBLAS, the library fastconv's kernels call, limited the same way), best of several. The
   ceiling is the larger of the two, measured before and after the timings (the larger of
   the two measurements is used: a busy moment on a shared machine lowers one). It runs in its own process because idle OpenBLAS threads
   keep spinning for a long while after a GEMM and would steal the cores from the runs that
   follow (found by ``bench/kernels.py``); the process exits before any timing starts.
2. **Equivalence.** In this process, one training step of each model on the same 8 samples in
   both frameworks: the loss and, for every parameter tensor, the update plain SGD applies
   (``-lr * grad``, read from each framework) must agree within a relative error (2-norm) of
   1e-4; the script also checks that each optimizer really applied ``-lr * grad``. Any miss
   aborts the run (exit status 1) before anything is timed or written.
3. **Timing.** Each framework runs in its own long-lived worker process (this script with
   ``--worker``), so that neither pays for the other's imports, thread pools or memory: the
   fastconv worker never imports torch. Each worker holds a synthetic training set of
   ``--dataset-size`` (default 60,000, MNIST's size) N(0, 1) float32 images with random labels
   and walks through it in consecutive slices. A case (model, train/infer, batch) is warmed up
   (``--warmup`` seconds, at least 2 steps), then given a fixed number of steps per run so
   that a run lasts at least ``--min-time`` seconds. Runs alternate fastconv, torch, fastconv,
   torch, ... (``--repeats`` each, default 7) with a short pause between runs so that the
   previous runtime's spinning threads have gone to sleep; the table gives the medians and
   the ratio of medians fastconv / torch (> 1: fastconv is faster). Both use ``--threads``
   threads (default: the usable cores): ``fastconv.set_num_threads(n)`` and
   ``torch.set_num_threads(n)``. Training samples/s counts one optimizer step (zero the
   gradients, forward, loss, backward, update) per batch.
4. **Extras.** The MNIST epoch time at batch 1 is estimated as 60,000 / (training samples/s at
   batch 1). Peak RSS is the worker's ``ru_maxrss`` at the end: the process that held the
   60,000-sample set and ran every case, batch-1000 inference included (an upper bound for a
   training run at the same batch sizes; the peak after the training cases alone is recorded
   too). ``--threads-scaling`` adds a fastconv worker with
   ``set_num_threads(1)`` and alternates it with the n-thread one at batch 1 and 128 (training).
   ``--env-matrix`` starts fastconv workers that do not call ``set_num_threads`` under every
   combination of ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` in {unset, 1, cores} and
   compares their training throughput at batch 1 and 128 with ``set_num_threads(1)`` and
   ``set_num_threads(cores)`` (round robin over all workers, ``--repeats`` rounds, the
   order shuffled each round with a fixed seed so that a periodic load on the host does
   not always land on the same settings). A setting is reported slower than
   ``set_num_threads(1)`` when it lost every round to the reference's run of the same round
   *and* its median paired ratio is below ``1 - SLOWER_MARGIN`` (3%). Settings that ask for
   one thread run the very same code as the reference, so a loss smaller than that is the
   host's drift (one such cell in 32 lost 5 of 5 rounds by 1% in a run); oversubscription
   costs tens of percent.

FLOP counting
-------------
Only the GEMM work of convolutions and linear layers is counted, 2 FLOPs per multiply-add,
derived from the layer shapes by a forward pass: a layer with M multiply-adds per sample costs
2M forward and 2M for the weight gradient, plus 2M for the input gradient except in the first
layer (no gradient with respect to the data). Biases, activations, pooling, normalization, the
loss and the SGD update are not counted (they are < 1% of the FLOPs but not of the time).
maxpool: 23.4 MFLOP forward + 44.3 backward = 67.7 MFLOP per training sample, 23.4 per
inference sample; convnet: the same (its normalization is not counted).
``pct_of_ceiling = samples/s * FLOPs/sample / ceiling``.

Output
------
A table on stdout and ``--output`` (default ``bench/results/compare_torch.json``), written
atomically: per model key (``maxpool``, ``convnet``) ``{"model", "threads", "machine",
"sgemm_gflops", "train": {"1": {"fastconv", "torch", "ratio", "pct_of_ceiling", ...}, "32",
"128"}, "infer": {"1", "1000"}, ...}`` plus the check, the ceiling details, per-run samples,
epoch estimate, peak RSS and the optional thread-scaling and env-matrix results. Only the
models measured in this run are written. Numbers from a shared machine are noisy: compare
only within one run.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

SCRIPT = os.path.abspath(__file__)
REPO = os.path.dirname(os.path.dirname(SCRIPT))
if REPO not in sys.path:
    # Run as a script: make the repository root importable for `fastconv` and `bench`.
    sys.path.insert(0, REPO)

from bench._machine import cpu_model, usable_cores  # noqa: E402

__all__ = ["MODEL_NAMES", "MODEL_INPUTS", "build_fastconv_model", "count_flops", "check_equivalence",
           "env_verdict", "main", "parse_args"]

MODEL_NAMES = ("maxpool", "convnet")
# Every model build_fastconv_model knows, with its input (C, H, W): the homework's two and a
# CIFAR-shaped net (3x3 padding-1 convolutions, 32-64-128 channels, ReLU, max pooling), with
# and without batch norm after each convolution.
MODEL_INPUTS = {"maxpool": (1, 32, 32), "convnet": (1, 32, 32), "cifar": (3, 32, 32),
                "cifar-bn": (3, 32, 32)}
LR = 1e-3
CHECK_RTOL = 1e-4
CHECK_BATCH = 8
SEED = 1
MNIST_TRAIN = 60000
# Issue 5's targets, printed beside the measurements (ratios fastconv / torch).
RATIO_TARGETS = {("train", 1): 2.5, ("train", 32): 1.4, ("train", 128): 1.4,
                 ("infer", 1000): 1.4}
EPOCH_TARGET_S = {"maxpool": 45.0, "convnet": 60.0}
SCALING_TARGETS = {1: 1.4, 128: 1.7}
RSS_TARGET_MIB = 1024.0
# Pause between alternating runs: libgomp threads spin for a moment after a parallel region
# before they sleep; this keeps one framework's spinning from landing in the other's run.
PAUSE_S = 0.05
# Resolution of the environment matrix's "slower than one thread" verdict (see the docstring).
SLOWER_MARGIN = 0.03
DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "compare_torch.json")
BUSY_OUTPUT = os.path.join(REPO, "bench", "results", "busy_host.json")


def _torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def _machine():
    return (f"{cpu_model()}, {usable_cores()} usable cores (of {os.cpu_count()}), "
            f"{platform.system()} {platform.machine()}, Python {platform.python_version()}")


# -- the fastconv side -----------------------------------------------------------------------
def build_fastconv_model(name, seed=SEED):
    """The benchmark model ``name`` from fastconv's public layers, float32."""
    import fastconv.nn as nn

    if name == "convnet":
        return nn.build_model("convnet", loss="nll", dtype=np.float32, seed=seed)
    rng = np.random.default_rng(seed)
    f32 = np.float32
    if name in ("cifar", "cifar-bn"):
        layers = []
        for c_in, c_out in ((3, 32), (32, 64), (64, 128)):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, dtype=f32, rng=rng))
            if name == "cifar-bn":
                layers.append(nn.BatchNorm2d(c_out, dtype=f32))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(2048, 128, dtype=f32, rng=rng),
                             nn.ReLU(), nn.Linear(128, 10, dtype=f32, rng=rng),
                             nn.LogSoftmax())
    if name != "maxpool":
        raise ValueError(f"unknown model {name!r}; choose from {list(MODEL_INPUTS)}")
    return nn.Sequential(
        nn.Conv2d(1, 64, 5, dtype=f32, rng=rng), nn.Tanh(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 5, dtype=f32, rng=rng), nn.Tanh(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128, dtype=f32, rng=rng), nn.Tanh(),
        nn.Linear(128, 10, dtype=f32, rng=rng), nn.LogSoftmax())


class FastconvTrainer:
    """One plain-SGD step per call, as a user writes it with the public API."""

    def __init__(self, model):
        import fastconv.nn as nn
        from fastconv.optim import SGD

        self.model = model.train()
        self.criterion = nn.NLLLoss()
        self.params, self.grads = model.flat_parameters()
        self.optimizer = SGD(self.params, lr=LR, lr_decay=0, momentum=0)

    def step(self, x, y):
        model, crit, grads = self.model, self.criterion, self.grads

        def closure():
            model.zero_grad()
            out = model.forward(x)
            loss = crit.forward(out, y)
            model.backward(crit.backward(), need_input_grad=False)
            return loss, grads
        return self.optimizer.step(closure)[0]


def count_flops(model):
    """GEMM FLOPs per sample of a fastconv model: (forward, backward).

    Walks the layers with one zero sample to get every Conv2d/Linear output size; a layer of
    M multiply-adds costs 2M forward, 2M for its weight gradient and 2M for its input gradient
    (skipped for the first weight layer, whose input is the data).
    """
    import fastconv.nn as nn

    x = np.zeros((1, 1, 32, 32), np.float32)
    fwd = bwd = 0
    first = True
    model.eval()
    for layer in model.layers:
        y = layer.forward(x)
        macs = 0
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            macs = y.size * layer.in_channels * kh * kw
        elif isinstance(layer, nn.Linear):
            macs = layer.in_features * layer.out_features
        if macs:
            fwd += 2 * macs
            bwd += 2 * macs * (1 if first else 2)
            first = False
        x = y
    model.train()
    return fwd, bwd


# -- equivalence check -----------------------------------------------------------------------
def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else float(np.linalg.norm(a))


def check_equivalence(name, batch=CHECK_BATCH, seed=0):
    """One SGD step of both frameworks from the same weights on the same batch.

    Returns
    -------
    dict
        ``loss_fastconv``, ``loss_torch``, ``loss_rel_err``, ``update_rel_err`` (the largest
        over parameter tensors of ||u_fc - u_t|| / ||u_t||, u = -lr * grad),
        ``applied_rel_err`` (the largest, over both frameworks and tensors, of
        ||(after - before) - u|| / ||u||: did each optimizer apply its update; float32
        rounding of the parameters alone makes this ~1e-3), ``ok``.
    """
    import torch
    import torch.nn.functional as TF
    from bench import _torch_models as TM

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=batch).astype(np.int64)

    fc_model = build_fastconv_model(name)
    trainer = FastconvTrainer(fc_model)
    before = [p.astype(np.float64) for p in fc_model.params()]
    t_model = TM.copy_weights(TM.build_torch_model(name), fc_model.params())
    t_opt = torch.optim.SGD(t_model.parameters(), lr=LR)

    loss_fc = float(trainer.step(x, y))
    grads_fc = [g.astype(np.float64) for g in fc_model.grads()]
    after_fc = [p.astype(np.float64) for p in fc_model.params()]

    t_opt.zero_grad()
    loss_t = TF.nll_loss(t_model(torch.from_numpy(x)), torch.from_numpy(y))
    loss_t.backward()
    t_params = TM.torch_params(t_model)
    grads_t = [p.grad.detach().numpy().astype(np.float64) for p in t_params]
    t_opt.step()
    after_t = [p.detach().numpy().astype(np.float64) for p in t_params]
    loss_t = float(loss_t.item())

    update_err, applied_err = 0.0, 0.0
    for b, gf, gt, af, at in zip(before, grads_fc, grads_t, after_fc, after_t):
        uf, ut = -LR * gf, -LR * gt
        update_err = max(update_err, _rel(uf, ut))
        applied_err = max(applied_err, _rel(af - b, uf), _rel(at - b, ut))
    loss_err = abs(loss_fc - loss_t) / abs(loss_t)
    # A 5% bound on `applied` catches a wrong learning rate or a missing update while
    # allowing for the float32 rounding of parameters ~1e2 times larger than their update.
    ok = loss_err < CHECK_RTOL and update_err < CHECK_RTOL and applied_err < 0.05
    return {"batch": batch, "loss_fastconv": loss_fc, "loss_torch": loss_t,
            "loss_rel_err": loss_err, "update_rel_err": update_err,
            "applied_rel_err": applied_err, "rtol": CHECK_RTOL, "ok": bool(ok)}


# -- workers ---------------------------------------------------------------------------------
class _Case:
    """A (model, mode, batch) workload inside a worker: a callable making one step."""

    def __init__(self, step, batch, n_data):
        self.step, self.batch, self.n_data = step, batch, n_data
        self.pos = 0
        self.n_steps = None

    def slices(self, k):
        for _ in range(k):
            if self.pos + self.batch > self.n_data:
                self.pos = 0
            lo = self.pos
            self.pos += self.batch
            yield lo, lo + self.batch

    def run(self, k):
        step = self.step
        t0 = time.perf_counter()
        for lo, hi in self.slices(k):
            step(lo, hi)
        return time.perf_counter() - t0


def _fastconv_case(name, mode, x, y):
    model = build_fastconv_model(name)
    if mode == "train":
        trainer = FastconvTrainer(model)
        return lambda lo, hi: trainer.step(x[lo:hi], y[lo:hi])
    model.eval()
    return lambda lo, hi: model.forward(x[lo:hi])


def _torch_case(name, mode, x, y, weights):
    import torch
    import torch.nn.functional as TF
    from bench import _torch_models as TM

    model = TM.copy_weights(TM.build_torch_model(name), weights[name])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=LR)

        def step(lo, hi):
            opt.zero_grad()
            loss = TF.nll_loss(model(xt[lo:hi]), yt[lo:hi])
            loss.backward()
            opt.step()
            return loss
        return step
    model.eval()

    def infer(lo, hi):
        with torch.inference_mode():
            return model(xt[lo:hi])
    return infer


def _worker_main(args):
    """Serve timing requests, one JSON object per line on stdin -> one per line on stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    if args.worker == "ceiling":
        proto.write(json.dumps(_measure_ceiling(args.threads, args.sgemm_size)) + "\n")
        return 0
    weights = {}
    if args.worker == "torch":
        import torch
        if args.set_threads:
            torch.set_num_threads(args.threads)
        with np.load(args.weights) as f:
            for name in MODEL_NAMES:
                keys = sorted((k for k in f.files if k.startswith(name + "_")),
                              key=lambda k: int(k.rsplit("_", 1)[1]))
                weights[name] = [f[k] for k in keys]
        threads = torch.get_num_threads()
    else:
        if args.fastconv_from:
            # An A/B worker (--baseline): this build's package instead of the repository's.
            sys.path.insert(0, os.path.abspath(args.fastconv_from))
        import fastconv
        if args.set_threads:
            fastconv.set_num_threads(args.threads)
        if not args.fastpath:
            from fastconv.nn import _fastpath
            _fastpath.set_enabled(False)
        threads = fastconv.get_num_threads()
    rng = np.random.default_rng(12345)
    x = rng.standard_normal((args.dataset_size, 1, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, size=args.dataset_size).astype(np.int64)
    cases = {}
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "quit":
            break
        if op == "info":
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            proto.write(json.dumps({"threads": threads, "peak_rss_mib": rss}) + "\n")
            continue
        key = (req["model"], req["mode"], req["batch"])
        case = cases.get(key)
        if case is None:
            if args.worker == "torch":
                step = _torch_case(req["model"], req["mode"], x, y, weights)
            else:
                step = _fastconv_case(req["model"], req["mode"], x, y)
            case = cases[key] = _Case(step, req["batch"], args.dataset_size)
            # Warm up (first calls allocate and fault pages in), then size the runs.
            case.run(req["warmup_steps"])
            n, t = 0, 0.0
            while n < req["warmup_steps"] or t < req["warmup"]:
                t += case.run(1)
                n += 1
            case.n_steps = max(req["min_steps"], math.ceil(req["min_time"] * n / max(t, 1e-9)))
        seconds = case.run(case.n_steps)
        proto.write(json.dumps({"samples_per_s": case.n_steps * case.batch / seconds,
                                "steps": case.n_steps, "seconds": seconds}) + "\n")
    return 0


class Worker:
    """A ``--worker`` subprocess of this script, driven over pipes."""

    def __init__(self, kind, threads, args, *, set_threads=True, env=None, dataset_size=None,
                 weights=None, label=None, extra=()):
        cmd = [sys.executable, SCRIPT, "--worker", kind, "--threads", str(threads),
               "--dataset-size", str(dataset_size or args.dataset_size), *extra]
        if not set_threads:
            cmd.append("--no-set-threads")
        if weights:
            cmd += ["--weights", weights]
        self.label = label or kind
        self.args = args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, cwd=REPO)

    def call(self, **req):
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise RuntimeError(f"worker {self.label} died (exit status {self.proc.poll()}); "
                               f"see its error output above")
        return json.loads(line)

    def run(self, model, mode, batch):
        a = self.args
        return self.call(op="run", model=model, mode=mode, batch=batch, min_time=a.min_time,
                         warmup=a.warmup, warmup_steps=a.warmup_steps, min_steps=a.min_steps)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def alternate(workers, model, mode, batch, repeats, shuffle_seed=None):
    """Run the case on every worker in turn, ``repeats`` rounds; samples/s lists by label.

    Every worker warms up first, so no round contains a warm-up. With ``shuffle_seed`` the
    order within each round is a seeded random permutation (the lists stay in round order).
    """
    for w in workers:
        w.run(model, mode, batch)
    out = {w.label: [] for w in workers}
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    for _ in range(repeats):
        order = workers if rng is None else [workers[i] for i in rng.permutation(len(workers))]
        for w in order:
            time.sleep(PAUSE_S)
            out[w.label].append(w.run(model, mode, batch)["samples_per_s"])
    return out


# -- the ceiling -----------------------------------------------------------------------------
def _measure_ceiling(threads, size):
    """float32 GEMM GFLOP/s with ``threads`` BLAS threads (run in a fresh process)."""
    import scipy.linalg.blas as sblas
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size ** 3

    def best(fn, reps=15):
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    res = {"size": size, "threads": threads}
    with threadpool_limits(limits=threads, user_api="blas"):
        res["numpy_matmul_gflops"] = best(lambda: a @ b)
        res["scipy_sgemm_gflops"] = best(lambda: sblas.sgemm(1.0, a, b))
    with threadpool_limits(limits=1, user_api="blas"):
        res["numpy_matmul_1thread_gflops"] = best(lambda: a @ b)
    res["gflops"] = max(res["numpy_matmul_gflops"], res["scipy_sgemm_gflops"])
    res["source"] = ("numpy_matmul" if res["gflops"] == res["numpy_matmul_gflops"]
                     else "scipy_sgemm")
    return res


def measure_ceiling(args):
    out = subprocess.run([sys.executable, SCRIPT, "--worker", "ceiling", "--threads",
                          str(args.threads), "--sgemm-size", str(args.sgemm_size)],
                         stdout=subprocess.PIPE, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the run ---------------------------------------------------------------------------------
def _median(xs):
    return float(statistics.median(xs)) if xs else None


def _ratio(a, b):
    return a / b if a and b else None


def _clean_env(**overrides):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def measure_model(name, args, ceiling, weights_path, have_torch):
    """Alternating fastconv/torch timings of every case of one model."""
    fwd, bwd = count_flops(build_fastconv_model(name))
    flops = {"train": fwd + bwd, "infer": fwd}
    gflops = ceiling["gflops"]
    fc = Worker("fastconv", args.threads, args, label="fastconv")
    workers = [fc]
    if have_torch:
        workers.append(Worker("torch", args.threads, args, weights=weights_path,
                              label="torch"))
    result = {"model": name, "threads": args.threads, "machine": _machine(),
              "sgemm_gflops": gflops,
              "flops_per_sample": {"train": flops["train"], "infer": flops["infer"],
                                   "forward": fwd, "backward": bwd}}
    try:
        for mode, batches in (("train", args.train_batches), ("infer", args.infer_batches)):
            if mode == "infer":
                # ru_maxrss only grows: this is the peak of the training cases alone.
                result["peak_rss_mib_train"] = {w.label: w.call(op="info")["peak_rss_mib"]
                                                for w in workers}
            result[mode] = {}
            for b in batches:
                runs = alternate(workers, name, mode, b, args.repeats)
                f, t = _median(runs["fastconv"]), _median(runs.get("torch", []))
                pct = 100.0 * f * flops[mode] / (gflops * 1e9)
                entry = {"fastconv": f, "torch": t, "ratio": _ratio(f, t),
                         "pct_of_ceiling": pct,
                         "torch_pct_of_ceiling": (100.0 * t * flops[mode] / (gflops * 1e9)
                                                  if t else None),
                         "fastconv_runs": runs["fastconv"], "torch_runs": runs.get("torch")}
                result[mode][str(b)] = entry
                _log(f"  {name} {mode} batch {b}: fastconv {f:.0f}/s"
                     + (f", torch {t:.0f}/s, ratio {f / t:.2f}" if t else ""))
        if "1" in result["train"]:
            result["mnist_epoch_s_batch1"] = {
                k: (MNIST_TRAIN / result["train"]["1"][k] if result["train"]["1"][k] else None)
                for k in ("fastconv", "torch")}
        result["peak_rss_mib"] = {w.label: w.call(op="info")["peak_rss_mib"] for w in workers}
        result["dataset_size"] = args.dataset_size
        if args.threads_scaling:
            one = Worker("fastconv", 1, args, label="fastconv-1thread")
            try:
                scaling = {}
                for b in (1, 128):
                    runs = alternate([fc, one], name, "train", b, args.repeats)
                    n, s = _median(runs["fastconv"]), _median(runs["fastconv-1thread"])
                    scaling[str(b)] = {"threads_n": n, "threads_1": s, "speedup": n / s,
                                       "n": args.threads, "runs_n": runs["fastconv"],
                                       "runs_1": runs["fastconv-1thread"]}
                    _log(f"  {name} scaling batch {b}: {n:.0f}/s vs {s:.0f}/s, {n / s:.2f}x")
                result["thread_scaling"] = scaling
            finally:
                one.close()
    finally:
        for w in workers:
            w.close()
    if args.env_matrix:
        result["env_matrix"] = measure_env_matrix(name, args)
    return result


def measure_env_matrix(name, args):
    """fastconv training throughput under OMP_NUM_THREADS x OPENBLAS_NUM_THREADS."""
    cores = str(usable_cores())
    values = (None, "1", cores)
    small = max(4096, max(args.train_batches))
    workers = [Worker("fastconv", 1, args, env=_clean_env(), dataset_size=small,
                      label="set_num_threads(1)"),
               Worker("fastconv", int(cores), args, env=_clean_env(), dataset_size=small,
                      label=f"set_num_threads({cores})")]
    for omp in values:
        for ob in values:
            label = f"OMP={omp or 'unset'} OPENBLAS={ob or 'unset'}"
            workers.append(Worker("fastconv", 1, args, set_threads=False, dataset_size=small,
                                  env=_clean_env(OMP_NUM_THREADS=omp, OPENBLAS_NUM_THREADS=ob),
                                  label=label))
    out = {}
    try:
        for b in (1, 128):
            runs = alternate(workers, name, "train", b, args.repeats, shuffle_seed=SEED + b)
            med = {k: _median(v) for k, v in runs.items()}
            ref, best = med["set_num_threads(1)"], max(med.values())
            # Each round runs every worker back to back, so the ratio of a setting's run
            # to the reference's run of the same round cancels the machine's slow drifts.
            paired = {k: [a / r for a, r in zip(runs[k], runs["set_num_threads(1)"])]
                      for k in runs}
            out[str(b)] = {k: {"samples_per_s": v, "vs_set_num_threads_1": v / ref,
                               "vs_best": v / best, "runs": runs[k],
                               "paired_vs_set_num_threads_1": paired[k]}
                           for k, v in med.items()}
            _log(f"  {name} env matrix batch {b}: done")
        out["threads"] = {w.label: w.call(op="info")["threads"] for w in workers}
    finally:
        for w in workers:
            w.close()
    return out


def _fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)


def env_verdict(e1, e128):
    """The environment matrix's verdict on one setting, from its batch-1 and batch-128
    entries (``vs_set_num_threads_1`` and the per-round ``paired_vs_set_num_threads_1``).

    Slower only when every paired round says so (a sign test: 5 of 5 rounds below 1 by
    chance has probability 1/32) and the median paired ratio is below ``1 - SLOWER_MARGIN``;
    otherwise "ok", or "ok within noise" with the rounds lost.
    """
    worst = min(e1["vs_set_num_threads_1"], e128["vs_set_num_threads_1"])
    paired = [e.get("paired_vs_set_num_threads_1", []) for e in (e1, e128)]
    slower = [sum(p < 1 for p in ps) for ps in paired]
    n_rounds = len(paired[0]) or 1
    lost = [bool(ps) and n == len(ps) and _median(ps) < 1 - SLOWER_MARGIN
            for n, ps in zip(slower, paired)]
    if worst >= 1.0:
        return "ok"
    if not any(lost):
        low = min(_median(ps) if ps else 1.0 for ps in paired)
        return (f"ok within noise ({slower[0]}/{n_rounds}, {slower[1]}/{n_rounds} rounds "
                f"slower, median paired {low:.2f})")
    return f"SLOWER than 1 thread in every round, by more than {100 * SLOWER_MARGIN:.0f}%"


def format_report(results, ceiling, checks, args, have_torch):
    lines = [f"# {_machine()}",
             f"# threads {args.threads} for both; float32; median of {args.repeats} alternating "
             f"runs (>= {args.min_time:g} s each); ratio = fastconv / torch",
             f"# sgemm ceiling {ceiling['gflops']:.1f} GFLOP/s ({ceiling['source']}, "
             f"{ceiling['size']}^3, {ceiling['threads']} threads; numpy matmul "
             f"{ceiling['numpy_matmul_gflops']:.1f}, scipy sgemm "
             f"{ceiling['scipy_sgemm_gflops']:.1f}, numpy 1 thread "
             f"{ceiling['numpy_matmul_1thread_gflops']:.1f})"]
    if not have_torch:
        lines.append("# PyTorch not installed (pip install torch==2.13.0): fastconv alone")
    for name, r in results.items():
        fl = r["flops_per_sample"]
        lines.append("")
        lines.append(f"{name}: {fl['train'] / 1e6:.1f} MFLOP per training sample, "
                     f"{fl['infer'] / 1e6:.1f} per inference sample")
        c = checks.get(name)
        if c:
            lines.append(f"  check: loss {c['loss_fastconv']:.6f} vs {c['loss_torch']:.6f} "
                         f"(rel {c['loss_rel_err']:.1e}), updates rel {c['update_rel_err']:.1e}"
                         f" < {CHECK_RTOL:g}: {'ok' if c['ok'] else 'FAILED'}")
        header = (f"  {'case':<13}{'fastconv/s':>11}{'torch/s':>10}{'ratio':>7}{'target':>8}"
                  f"{'fc %ceil':>10}{'torch %ceil':>12}")
        lines += [header, "  " + "-" * (len(header) - 2)]
        for mode in ("train", "infer"):
            for b, e in r[mode].items():
                tgt = RATIO_TARGETS.get((mode, int(b)))
                lines.append(f"  {mode + ' b=' + b:<13}{_fmt(e['fastconv']):>11}"
                             f"{_fmt(e['torch']):>10}{_fmt(e['ratio'], '.2f'):>7}"
                             f"{('>=' + format(tgt, 'g')) if tgt else '':>8}"
                             f"{_fmt(e['pct_of_ceiling'], '.1f'):>10}"
                             f"{_fmt(e['torch_pct_of_ceiling'], '.1f'):>12}")
        ep = r.get("mnist_epoch_s_batch1")
        if ep:
            lines.append(f"  MNIST epoch at batch 1 (60,000 / samples/s): fastconv "
                         f"{_fmt(ep['fastconv'], '.1f')} s (target <= "
                         f"{EPOCH_TARGET_S[name]:g} s), torch {_fmt(ep['torch'], '.1f')} s")
        rss, rss_train = r.get("peak_rss_mib", {}), r.get("peak_rss_mib_train", {})
        lines.append(f"  peak RSS with a {r['dataset_size']:,}-sample set in memory, after the "
                     f"training cases / after all (batch-{max(args.infer_batches)} inference "
                     f"too): " + ", ".join(f"{k} {rss_train.get(k, 0):.0f} / {v:.0f} MiB"
                                          for k, v in rss.items())
                     + f" (target fastconv <= {RSS_TARGET_MIB:g} MiB)")
        sc = r.get("thread_scaling")
        if sc:
            lines.append("  thread scaling (training, fastconv): " + "; ".join(
                f"batch {b}: {e['threads_n']:.0f}/s with {e['n']} vs {e['threads_1']:.0f}/s "
                f"with 1 = {e['speedup']:.2f}x (target >= {SCALING_TARGETS[int(b)]:g})"
                for b, e in sc.items()))
        em = r.get("env_matrix")
        if em:
            lines.append("  environment matrix (training samples/s; ratio to "
                         "set_num_threads(1); threads used):")
            lines.append(f"    {'setting':<30}{'b=1':>8}{'x1thr':>7}{'b=128':>8}{'x1thr':>7}"
                         f"{'threads':>8}  verdict")
            for k in em["1"]:
                e1, e128 = em["1"][k], em["128"][k]
                verdict = env_verdict(e1, e128)
                if k == "OMP=unset OPENBLAS=unset":
                    vb = min(e1["vs_best"], e128["vs_best"])
                    verdict += f"; {100 * vb:.0f}% of best (target >= 90%)"
                lines.append(f"    {k:<30}{e1['samples_per_s']:>8.0f}"
                             f"{e1['vs_set_num_threads_1']:>7.2f}{e128['samples_per_s']:>8.0f}"
                             f"{e128['vs_set_num_threads_1']:>7.2f}{em['threads'][k]:>8}"
                             f"  {verdict}")
    return "\n".join(lines)


def write_json(path, data):
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".compare_torch.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python bench/compare_torch.py",
        description="fastconv vs PyTorch CPU on the homework's ConvNets: equivalence check, "
                    "then alternating timings (float32).")
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    p.add_argument("--threads", type=int, default=usable_cores(),
                   help="threads for both frameworks and for the ceiling (default: usable "
                        "cores)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed runs per framework and case (default 7; use >= 5)")
    p.add_argument("--min-time", type=float, default=0.5,
                   help="minimum seconds per timed run (default 0.5)")
    p.add_argument("--warmup", type=float, default=0.3,
                   help="warm-up seconds per case and framework (default 0.3)")
    p.add_argument("--warmup-steps", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--min-steps", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--train-batches", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--infer-batches", type=int, nargs="+", default=[1, 1000])
    p.add_argument("--dataset-size", type=int, default=MNIST_TRAIN,
                   help="synthetic training-set size each worker holds (default 60000)")
    p.add_argument("--sgemm-size", type=int, default=1024)
    p.add_argument("--threads-scaling", action="store_true",
                   help="also fastconv with n threads vs 1 at batch 1 and 128")
    p.add_argument("--env-matrix", action="store_true",
                   help="also fastconv under OMP_NUM_THREADS x OPENBLAS_NUM_THREADS")
    p.add_argument("--all", action="store_true", help="--threads-scaling and --env-matrix")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test settings: 1 repeat, tiny runs, small data set (numbers "
                        "meaningless)")
    p.add_argument("--no-torch", action="store_true", help="measure fastconv alone")
    p.add_argument("--output", default=DEFAULT_OUTPUT,
                   help="JSON results path (default bench/results/compare_torch.json)")
    p.add_argument("--busy", action="store_true",
                   help="measure training on a busy host instead (bench/_busy.py): alone, "
                        "beside a pure-Python busy loop, two processes at once; default "
                        "thread settings of both frameworks")
    p.add_argument("--busy-batches", type=int, nargs="+", default=[1, 128])
    p.add_argument("--busy-seconds", type=float, default=5.0,
                   help="seconds each training process is timed in a busy scenario")
    p.add_argument("--busy-dataset-size", type=int, default=4096, help=argparse.SUPPRESS)
    p.add_argument("--baseline", metavar="TREE",
                   help="instead: this build (a source tree built in place, e.g. a git "
                        "worktree of an older commit) against the repository's, alternating, "
                        "every training and inference cell, plus the layers' fast path against "
                        "their validated path (bench/_ab.py)")
    # Internal: worker processes.
    p.add_argument("--worker", choices=("fastconv", "torch", "ceiling"), help=argparse.SUPPRESS)
    p.add_argument("--busy-worker", choices=("fastconv", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--no-set-threads", dest="set_threads", action="store_false",
                   help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--fastconv-from", help=argparse.SUPPRESS)
    p.add_argument("--no-fastpath", dest="fastpath", action="store_false",
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.all:
        args.threads_scaling = args.env_matrix = True
    if args.quick:
        args.busy_seconds = min(args.busy_seconds, 0.5)
        args.busy_dataset_size = min(args.busy_dataset_size, 512)
        args.repeats, args.min_time, args.warmup = 1, 0.0, 0.0
        args.warmup_steps = args.min_steps = 1
        args.sgemm_size = min(args.sgemm_size, 256)
        args.dataset_size = min(args.dataset_size, 1024)
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1")
    if not args.worker:
        need = max(args.train_batches + args.infer_batches)
        if args.dataset_size < need:
            args.dataset_size = need
    return args


def _busy_step(framework, model, mode, x, y, weights_path=None):
    if framework == "fastconv":
        return _fastconv_case(model, mode, x, y)
    with np.load(weights_path) as f:
        keys = sorted((k for k in f.files if k.startswith(model + "_")),
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        weights = {model: [f[k] for k in keys]}
    return _torch_case(model, mode, x, y, weights)


def main_busy(args, have_torch):
    """``--busy``: the busy-host scenarios; writes bench/results/busy_host.json."""
    from bench import _busy

    frameworks = ["fastconv", "torch"] if have_torch else ["fastconv"]
    with tempfile.TemporaryDirectory(prefix="compare_torch.") as tmp:
        weights_path = os.path.join(tmp, "weights.npz")
        np.savez(weights_path, **{f"maxpool_{i}": a for i, a in
                                  enumerate(build_fastconv_model("maxpool").params())})
        busy = _busy.run_busy(SCRIPT, args, frameworks, weights_path, log=_log)
    output = args.output if args.output != DEFAULT_OUTPUT else BUSY_OUTPUT
    import fastconv
    write_json(output, {"machine": _machine(), "fastconv": fastconv.__version__,
                        "settings": {"repeats": args.repeats, "seconds": args.busy_seconds,
                                     "quick": args.quick},
                        "environment": {k: os.environ.get(k) for k in
                                        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                         "OMP_WAIT_POLICY")},
                        "busy": busy})
    print(_busy.format_busy(busy))
    print(f"\n# wrote {os.path.relpath(output)}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return _worker_main(args)
    if args.busy_worker:
        from bench import _busy
        return _busy.busy_worker_main(
            args, lambda fw, model, mode, x, y: _busy_step(fw, model, mode, x, y, args.weights))
    if args.baseline:
        from bench import _ab
        return _ab.main_ab(args, Worker, alternate, _log, _machine(), write_json)
    have_torch = not args.no_torch and _torch_available()
    if not have_torch:
        print("PyTorch is not installed (pip install torch==2.13.0): measuring fastconv "
              "alone." if not args.no_torch else "--no-torch: measuring fastconv alone.",
              flush=True)
    if args.repeats < 5:
        _log(f"warning: {args.repeats} repeats; use >= 5 for numbers worth quoting")
    if args.busy:
        return main_busy(args, have_torch)

    t_start = time.perf_counter()
    _log(f"ceiling: float32 GEMM {args.sgemm_size}^3, {args.threads} threads, in a subprocess")
    ceiling = ceiling_before = measure_ceiling(args)

    import fastconv
    checks = {}
    if have_torch:
        import torch
        fastconv.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
        for name in args.models:
            checks[name] = c = check_equivalence(name)
            _log(f"check {name}: loss rel err {c['loss_rel_err']:.2e}, update rel err "
                 f"{c['update_rel_err']:.2e}, applied {c['applied_rel_err']:.2e}")
        bad = [n for n, c in checks.items() if not c["ok"]]
        if bad:
            for n in bad:
                c = checks[n]
                print(f"EQUIVALENCE CHECK FAILED for {n}: one SGD step of fastconv and PyTorch "
                      f"from the same weights disagree (loss {c['loss_fastconv']!r} vs "
                      f"{c['loss_torch']!r}, loss rel err {c['loss_rel_err']:.2e}, update rel "
                      f"err {c['update_rel_err']:.2e}, tolerance {CHECK_RTOL:g}; update "
                      f"applied rel err {c['applied_rel_err']:.2e}, tolerance 0.05). "
                      f"Not timing models that compute different things.", file=sys.stderr)
            return 1

    results = {}
    with tempfile.TemporaryDirectory(prefix="compare_torch.") as tmp:
        weights_path = os.path.join(tmp, "weights.npz")
        arrays = {}
        for name in MODEL_NAMES:
            for i, a in enumerate(build_fastconv_model(name).params()):
                arrays[f"{name}_{i}"] = a
        np.savez(weights_path, **arrays)
        for name in args.models:
            _log(f"measuring {name}")
            r = measure_model(name, args, ceiling, weights_path, have_torch)
            r["check"] = checks.get(name)
            r["ceiling"] = ceiling
            r["versions"] = {"fastconv": fastconv.__version__, "numpy": np.__version__,
                             "torch": __import__("torch").__version__ if have_torch else None}
            r["environment"] = {k: os.environ.get(k) for k in
                                ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
            r["settings"] = {"repeats": args.repeats, "min_time_s": args.min_time,
                             "warmup_s": args.warmup, "quick": args.quick}
            results[name] = r
    # The ceiling again after the timings: on a shared machine one measurement can land in a
    # busy moment; the larger of the two is the better estimate of what the cores can do.
    after = measure_ceiling(args)
    if after["gflops"] > ceiling["gflops"]:
        ratio = ceiling["gflops"] / after["gflops"]
        for r in results.values():
            r["sgemm_gflops"] = after["gflops"]
            r["ceiling"] = after
            for mode in ("train", "infer"):
                for e in r[mode].values():
                    for k in ("pct_of_ceiling", "torch_pct_of_ceiling"):
                        if e[k] is not None:
                            e[k] *= ratio
        ceiling = after
    for r in results.values():
        r["ceiling_runs_gflops"] = [c["gflops"] for c in (ceiling_before, after)]
    write_json(args.output, results)
    print(format_report(results, ceiling, checks, args, have_torch))
    print(f"\n# wrote {os.path.relpath(args.output)}; {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
