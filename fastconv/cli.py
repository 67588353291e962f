"""The ``fastconv`` command: ``train``, ``test`` and ``predict``, with the homework's options.

A user's mistake (a bad option value, missing or corrupt data, an unreadable model or
checkpoint, an unwritable ``--save``) ends the command with one line on stderr naming the
thing and the fix, exit status 2 for command-line usage and 1 for everything else; ``--debug``
shows the traceback instead. Anything else is a bug and keeps its traceback.
"""
import argparse
import csv
import errno
import io
import os
import sys

import numpy as np

from ._version import __version__
from ._threads import max_threads
from .datasets.catalog import DATA_DESCRIPTION, DATASETS
from .nn.loss import LOSSES
from .nn.models import MODELS
from . import optim

__all__ = ["main", "build_parser"]

USAGE_ERROR = 2
RUNTIME_ERROR = 1


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help once: not when the help already says its
    default, nor for flags and options whose absence is their default."""

    def _get_help_string(self, action):
        text = action.help or ""
        # By identity: 0 and 0.0 are defaults worth showing, and 0.0 == False.
        if "default" in text or any(action.default is v for v in
                                    (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to find help, no usage dump."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _number(kind, low=None, high=None, low_open=False, high_open=False):
    """argparse type: a ``kind`` (int or float) within bounds; the message quotes the input."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}; got {text!r}") \
                from None
        if kind is float and not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number; got {text!r}")
        bad_low = low is not None and (value < low or (low_open and value == low))
        bad_high = high is not None and (value > high or (high_open and value == high))
        if bad_low or bad_high:
            parts = []
            if low is not None:
                parts.append(f"{'>' if low_open else '>='} {low}")
            if high is not None:
                parts.append(f"{'<' if high_open else '<='} {high}")
            raise argparse.ArgumentTypeError(f"must be {' and '.join(parts)}; got {text!r}")
        return value
    parse.__name__ = kind.__name__    # argparse names the type in some messages
    return parse


def _thread_count(text):
    """argparse type of --threads: ``auto`` or an int in [1, max_threads()]; the message
    quotes the input."""
    if text.strip().lower() == "auto":
        return "auto"
    n = _number(int, 1)(text)
    if n > max_threads():
        raise argparse.ArgumentTypeError(f"must be <= {max_threads()} (64 x the usable "
                                         f"cores); got {text!r}")
    return n


def _validation_size(text):
    """argparse type of --validation: a count (integer) or a fraction in (0, 1)."""
    try:
        value = int(text)
    except ValueError:
        value = _number(float, 0, 1, low_open=True, high_open=True)(text)
        return value
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a count >= 1 or a fraction in (0, 1); "
                                         f"got {text!r}")
    return value


def _scale_range(text):
    """argparse type of --scale: ``LO,HI`` with 0 < LO <= HI."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI, e.g. 0.9,1.1; got {text!r}") \
            from None
    if not 0 < lo <= hi or not np.isfinite(hi):
        raise argparse.ArgumentTypeError(f"must have 0 < LO <= HI; got {text!r}")
    return (lo, hi)


def _option_value(text):
    """A KEY=VALUE option's value: a number, true/false/none, a comma-separated list of
    those, or the text itself."""
    if "," in text:
        return [_option_value(part) for part in text.split(",") if part]
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _options(items, flag):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _UserError(f"{flag} takes KEY=VALUE; got {item!r}")
        out[key.strip()] = _option_value(value.strip())
    return out


def _optimizer_spec(args):
    """The optimizer spec of ``fastconv train``'s options; the homework's four take the
    homework driver's defaults (so that runs started before stay resumable)."""
    name = args.optimization.lower()
    extra = _options(args.optimizer_option, "--optimizer-option")
    if args.nesterov:
        extra.update(nesterov=True, dampening=0.0)
    if name in optim.HOMEWORK_OPTIMIZERS:
        driver = {"lr": args.learning_rate, "t0_epochs": args.t0, "max_iter": args.max_iter,
                  "weight_decay": args.weight_decay, "momentum": args.momentum,
                  "switch_to_lbfgs_after": args.switch_to_lbfgs_after}
        spec = optim.homework_optimizer(name, **{k: v for k, v in driver.items()
                                                 if v is not None})
        if not extra:
            return spec
        settings = spec.settings()
        target = settings["first"] if settings["name"] == "switch" else settings
        target.update(extra)
        return optim.as_spec(settings)
    if args.switch_to_lbfgs_after is not None:
        raise _UserError(f"--switch-to-lbfgs-after follows one of the homework's optimizers "
                         f"(SGD, ASGD, CG, LBFGS), not {args.optimization}")
    options = {"lr": args.learning_rate, **{k: v for k, v in (
        ("weight_decay", args.weight_decay), ("momentum", args.momentum),
        ("t0_epochs", args.t0), ("max_iter", args.max_iter)) if v is not None}, **extra}
    return optim.spec(name, **options)


def _schedule(args):
    """The schedule of ``--schedule``/``--schedule-option`` (None without --schedule)."""
    options = _options(args.schedule_option, "--schedule-option")
    if args.schedule is None:
        if options:
            raise _UserError("--schedule-option needs --schedule NAME")
        return None
    cls = optim.SCHEDULES.get(args.schedule.lower())
    if cls is None:
        raise _UserError(f"--schedule {args.schedule} is not a schedule; choose from "
                         f"{', '.join(optim.SCHEDULES)}")
    accepted = cls._options
    if "epochs" in accepted and not {"epochs", "total", "total_steps"} & set(options):
        options["epochs"] = args.epochs
    if "max_lr" in accepted and "max_lr" not in options:
        options["max_lr"] = args.learning_rate
    return optim.build_schedule(args.schedule.lower(), **options)


def _add_common_options(p, dataset_default=None):
    # Without a default of its own (test, predict), the help names the model's data set; the
    # empty "%(default).0s" stops the help formatter from appending "(default: None)".
    what = (f"(default: {dataset_default}){'%(default).0s'}" if dataset_default else "")
    p.add_argument("--dataset", choices=DATASETS, default=None if dataset_default else "mnist",
                   help="mnist, fashion-mnist, kmnist: a named set (--data optional: else "
                        "the cache, then a download); idx: a folder of IDX files in the "
                        "MNIST layout; cifar: a folder of CIFAR-10 binary batches; npz: a "
                        "file of arrays x, y, x_test, y_test " + what)
    p.add_argument("--data", default=None,
                   help="the data set's folder or file (for mnist default: $FASTCONV_DATA, "
                        "the user cache, then a download)")
    p.add_argument("--size", choices=["full", "small"], default="full",
                   help="full = 60,000 train / 10,000 test; small = first 6,000 / 1,000")
    p.add_argument("--threads", type=_thread_count, default=None,
                   help="CPU threads, or 'auto': the cores other processes leave free, "
                        "re-measured as it runs (default: auto, or OMP_NUM_THREADS when set)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error")


def build_parser():
    """The ``fastconv`` argument parser (subcommands ``train``, ``test``, ``predict``).

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(prog="fastconv",
                     description="Train and evaluate the MNIST homework's networks.")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    fmt = _HelpFormatter

    t = sub.add_parser("train", help="train a model, saving logs and the model every epoch",
                       formatter_class=fmt)
    _add_common_options(t)
    t.add_argument("--seed", type=_number(int, 0), default=1, help="fixes every random choice")
    t.add_argument("--model", choices=list(MODELS),
                   default="convnet", help="network (convnet-max: max pooling and ReLU)")
    t.add_argument("--loss", choices=list(LOSSES), default="nll",
                   help="nll: log-softmax head; mse: tanh head against +-1 targets; margin: "
                        "multi-class hinge on raw scores")
    names = [o.upper() for o in optim.OPTIMIZERS if o != "switch"]
    t.add_argument("--optimization", "--optimizer", type=str.upper, choices=names,
                   default="SGD", metavar="NAME",
                   help=f"optimizer: {', '.join(names)} (the homework's: SGD, ASGD, CG, LBFGS)")
    t.add_argument("--learning-rate", type=_number(float, 0, low_open=True),
                   default=1e-3, help="SGD, Adam and L-BFGS step size; ASGD eta0")
    t.add_argument("--batch-size", type=_number(int, 1), default=1,
                   help="1 = pure stochastic; a batch's gradient is the mean over its samples")
    t.add_argument("--weight-decay", type=_number(float, 0), default=None,
                   help="SGD, Adam: L2 penalty; AdamW: decoupled decay (default: the "
                        "optimizer's: 0, AdamW 0.01)")
    t.add_argument("--momentum", type=_number(float, 0, 1, high_open=True), default=None,
                   help="SGD momentum (default 0)")
    t.add_argument("--nesterov", action="store_true",
                   help="SGD: Nesterov momentum (PyTorch's form: no dampening)")
    t.add_argument("--t0", type=_number(float, 0), default=None,
                   help="ASGD: start averaging after t0 x (training-set size) updates, the "
                        "Torch7 driver's trsize * t0 (t0 epochs at batch 1; default 1)")
    t.add_argument("--max-iter", type=_number(int, 1), default=None,
                   help="CG and L-BFGS: iterations per mini-batch (default 2)")
    t.add_argument("--optimizer-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other option of the optimizer, e.g. betas=0.9,0.99 or eps=1e-6 "
                        "(repeatable)")
    t.add_argument("--schedule", default=None, metavar="NAME",
                   help="learning-rate schedule: step, multistep, exponential, cosine, "
                        "onecycle, plateau (cosine and onecycle span --epochs unless told; "
                        "onecycle peaks at --learning-rate unless max_lr is given; plateau "
                        "follows the validation loss)")
    t.add_argument("--schedule-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the schedule, e.g. warmup_epochs=1, milestones=10,15, "
                        "gamma=0.5 (repeatable)")
    t.add_argument("--validation", type=_validation_size, default=None, metavar="N",
                   help="hold out N training samples (or a fraction, e.g. 0.1), stratified "
                        "and seeded; evaluated every epoch and kept as best_model.npz by "
                        "validation accuracy")
    t.add_argument("--early-stopping", type=_number(int, 1), default=None, metavar="PATIENCE",
                   help="stop when the validation loss has not improved for PATIENCE epochs "
                        "(needs --validation)")
    t.add_argument("--label-smoothing", type=_number(float, 0, 1, high_open=True),
                   default=0.0, help="nll loss: weight of the uniform target")
    t.add_argument("--type", choices=["double", "float"], default="float",
                   help="float32 (float) or float64 (double); float is much faster")
    t.add_argument("--save", default="results", help="folder for logs and the model")
    t.add_argument("--epochs", type=_number(int, 1), default=10,
                   help="total epochs, counting those of a resumed run")
    t.add_argument("--rotate", type=_number(float, 0), default=0.0, metavar="SIGMA",
                   help="random rotation of training images, angle ~ N(0, SIGMA^2) radians "
                        "(the homework's best: 0.2)")
    t.add_argument("--translate", type=_number(float, 0, 1), default=0.0, metavar="FRACTION",
                   help="random shift of training images, up to FRACTION of their size")
    t.add_argument("--scale", type=_scale_range, default="1,1", metavar="LO,HI",
                   help="random scaling of training images by a factor in [LO, HI]")
    t.add_argument("--shear", type=_number(float, 0, 1.5), default=0.0, metavar="RADIANS",
                   help="random shear of training images, up to RADIANS")
    t.add_argument("--switch-to-lbfgs-after", type=_number(int, 1), default=None, metavar="K",
                   help="switch to L-BFGS after epoch K")
    t.add_argument("--dropout", type=_number(float, 0, 1, high_open=True), default=0.0,
                   help="dropout probability before the fully connected layers")
    t.add_argument("--extra-conv", action="store_true", help="add a third convolution layer")
    t.add_argument("--local-contrast", action="store_true",
                   help="local contrastive normalization of the inputs (7-tap Gaussian)")
    t.add_argument("--no-resume", action="store_true",
                   help="start over even if the save folder holds a checkpoint (its logs, "
                        "model and checkpoint are replaced)")
    t.add_argument("--visualize", action="store_true",
                   help="after training, write into --save filters_layer1.png and "
                        "filters_layer2.png (the first two convolutions: a first layer's "
                        "filters as tiles, a deeper one as a map of its kernels' norms beside "
                        "its strongest kernels) and inputs.png (training inputs)")
    t.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bars (auto: only on a terminal)")

    e = sub.add_parser("test", help="evaluate a saved model (or an ensemble) on the test set",
                       formatter_class=fmt)
    _add_common_options(e, "the one the model was trained on")
    e.add_argument("--model-file", nargs="+", default=os.path.join("results", "model.npz"),
                   help="model saved by 'fastconv train'; several: test their ensemble (the "
                        "mean of their class probabilities), and each of them")

    p = sub.add_parser("predict", formatter_class=fmt,
                       help="label your own digit images, or the MNIST test set as CSV",
                       description="Without IMAGE: write Id,Prediction CSV for the MNIST "
                                   "test set. With IMAGE files: print (or write to --output) "
                                   "file,label,p0..p9 for each digit, prepared exactly as the "
                                   "training data was.")
    _add_common_options(p, "the one the model was trained on")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="PNG files (any size, dark-on-light or light-on-dark) or .npy arrays "
                        "(H, W) or (N, H, W) of grey levels")
    p.add_argument("--model-file", nargs="+", default=os.path.join("results", "model.npz"),
                   help="model saved by 'fastconv train'; several: predict with their "
                        "ensemble (the mean of their class probabilities). After the first, "
                        "model files end in .npz: IMAGE files may follow the list")
    p.add_argument("--output", default=None,
                   help="CSV to write (default: predictions.csv for the test set, standard "
                        "output for IMAGE files)")
    return parser


# -- commands ---------------------------------------------------------------------------
# The MNIST-layout sets: IDX images, 28x28 for the named ones, padded as MNIST.
_IDX_KINDS = ("mnist", "fashion-mnist", "kmnist", "idx")


def _check_data_path(args):
    name = args.dataset
    if args.data is None:
        if name not in _IDX_KINDS or name == "idx":
            raise _UserError(f"--dataset {name} needs --data: {DATA_DESCRIPTION[name]}")
        return
    want_file = name == "npz"
    ok = os.path.isfile(args.data) if want_file else os.path.isdir(args.data)
    if not ok:
        # A named set's loader would go on to FASTCONV_DATA, the cache and a download: a
        # path the user named and mistyped must not quietly give way to another copy.
        raise _UserError(f"--data {args.data}: no such {'file' if want_file else 'folder'}; "
                         f"--dataset {name} needs {DATA_DESCRIPTION[name]}")


def _load_data(args, dtype, normalization=None, local_contrast=False):
    from .datasets import Normalization, load_dataset

    _check_data_path(args)
    if local_contrast and args.dataset not in _IDX_KINDS:
        raise _UserError(f"--local-contrast applies to the MNIST-layout sets "
                         f"({', '.join(_IDX_KINDS)}), not --dataset {args.dataset}")
    from .datasets import DataFileError

    norm = Normalization.from_dict(normalization) if normalization else True
    try:
        return load_dataset(args.dataset, args.data, size=args.size, dtype=dtype,
                            normalize=norm, local_contrast=local_contrast)
    except ValueError as exc:
        if isinstance(exc, DataFileError):
            raise
        # The only argument a user's data can make wrong is the size (a small set has
        # fewer than 6,000 / 1,000 samples).
        raise _UserError(f"--size {args.size}: {exc}; pass --size full") from None


def _train(args):
    from . import nn, set_num_threads
    from .callbacks import BestModel, EarlyStopping
    from .nn.loss import make_loss
    from .train import Trainer, check_save_folder, check_schedule_fits

    if args.extra_conv and not args.model.startswith("convnet"):
        raise _UserError(f"--extra-conv adds a convolution to a convnet; --model {args.model} "
                         f"has none. Drop --extra-conv or pass --model convnet (or "
                         f"convnet-max)")
    # Before any work: a bad option or a --save that cannot be written would otherwise fail
    # after the data is loaded, or after an epoch.
    callbacks = []
    if args.validation is not None:
        callbacks.append(BestModel("val_accuracy"))
        if args.early_stopping is not None:
            callbacks.append(EarlyStopping("val_loss", patience=args.early_stopping))
    elif args.early_stopping is not None:
        raise _UserError("--early-stopping watches the validation loss: add --validation N")
    try:
        loss = make_loss(args.loss, label_smoothing=args.label_smoothing) \
            if args.label_smoothing else args.loss
        parts = dict(loss=loss, optimizer=_optimizer_spec(args), schedule=_schedule(args))
        check_schedule_fits(parts["optimizer"], parts["schedule"])
    except (TypeError, ValueError) as exc:
        raise _UserError(f"{exc} (see 'fastconv train --help')") from None
    _check_data_path(args)
    check_save_folder(args.save)
    set_num_threads(args.threads)
    dtype = np.float32 if args.type == "float" else np.float64
    data = _load_data(args, dtype, local_contrast=args.local_contrast)
    try:
        model = nn.build_model(args.model, loss=args.loss, input_shape=data.input_shape,
                               n_classes=data.n_classes, extra_conv=args.extra_conv,
                               dropout=args.dropout, rotate=args.rotate,
                               translate=args.translate, scale=args.scale, shear=args.shear,
                               dtype=dtype, seed=args.seed)
    except ValueError as exc:
        raise _UserError(f"--model {args.model} does not fit --dataset {args.dataset} "
                         f"(images {data.input_shape}): {exc}") from None
    print(model.summary(data.input_shape))
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    metadata = {**data.metadata(), "local_contrast": args.local_contrast, "model": args.model,
                "options": {k: v for k, v in vars(args).items() if k not in ("func", "debug")}}
    trainer = Trainer(model, **parts, batch_size=args.batch_size, callbacks=callbacks,
                      seed=args.seed, threads=args.threads, save_dir=args.save,
                      progress=progress, metadata=metadata)
    test_x, test_y = (data.test_x, data.test_y) if len(data.test_y) else (None, None)
    if args.validation is None:
        trainer.fit(data.train_x, data.train_y, test_x, test_y, epochs=args.epochs,
                    resume=not args.no_resume)
    else:
        # Epochs are chosen on the validation split; the test set is evaluated once, on
        # the model that choice kept, for the record.
        trainer.fit(data.train_x, data.train_y, epochs=args.epochs,
                    resume=not args.no_resume, validation=args.validation)
        if test_x is not None:
            _test_best(trainer, callbacks[0], test_x, test_y, args.save)
    if args.visualize:
        _write_figures(model, data.train_x, args.save)
    return 0


def _test_best(trainer, best, test_x, test_y, folder):
    """Evaluate the best-on-validation model on the test set once; write final_test.json."""
    import json

    from .serialization import atomic_write_text

    best.load_into(trainer.model)
    result = trainer.evaluate(test_x, test_y)
    record = {"epoch": best.epoch, "monitor": best.monitor, "value": best.value,
              "test_loss": result.loss, "test_accuracy": result.accuracy,
              "test_mean_class_accuracy": result.mean_class_accuracy}
    atomic_write_text(os.path.join(folder, "final_test.json"),
                      json.dumps(record, indent=1) + "\n")
    print(f"test (once, the model of epoch {best.epoch}, best {best.monitor} "
          f"{100 * best.value:.2f}%): loss {result.loss:.4f}, accuracy "
          f"{100 * result.accuracy:.2f}%")
    print(result.confusion)


def _write_figures(model, inputs, folder):
    from .visualize import visualize_model

    # The figures are plain matplotlib Figures (no pyplot, no backend switch): saving one
    # renders it with Agg for the PNG.
    for name, fig in visualize_model(model, inputs).items():
        path = os.path.join(folder, name + ".png")
        fig.savefig(path, dpi=120)
        print("wrote", path)


def _trained_on(meta, path):
    """The ``dataset`` record of a model file's metadata (MNIST for older files), checked."""
    from .serialization import dataset_record

    return dataset_record(meta, path)


def _check_fits(model, path, input_shape, n_classes, name):
    """Refuse, with the fix, a model that cannot take this data set's samples or classes."""
    from .serialization import ModelFileError, forward_one_sample

    try:
        y = forward_one_sample(path, model, input_shape)
    except ModelFileError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelFileError(path, f"the model does not take --dataset {name}'s inputs of "
                                   f"shape {tuple(input_shape)} ({exc})") from None
    if y.ndim != 2 or y.shape[1] != n_classes:
        got = y.shape[1] if y.ndim == 2 else f"shape {y.shape[1:]}"
        raise ModelFileError(path, f"the model has {got} outputs per sample; --dataset "
                                   f"{name} has {n_classes} classes (one output each)")


def _check_trained_on(args, path, trained, data):
    """Refuse data whose input shape or classes differ from those a model was trained on."""
    if (list(trained["input_shape"]), trained["n_classes"]) != \
            (list(data.input_shape), data.n_classes):
        raise _UserError(
            f"{path} was trained on --dataset {trained.get('name')} (inputs "
            f"{tuple(trained['input_shape'])}, {trained['n_classes']} classes); --dataset "
            f"{args.dataset} gives inputs {data.input_shape}, {data.n_classes} classes. "
            f"Pass the --dataset and --data it was trained on")


def _load_for_eval(args, need_data=True):
    from . import set_num_threads
    from .serialization import load_model

    set_num_threads(args.threads)
    model, meta = load_model(args.model_file)
    trained = _trained_on(meta, args.model_file)
    args.dataset = args.dataset or trained.get("name", "mnist")
    data = None
    if need_data:
        data = _load_data(args, model.dtype, meta.get("normalization"),
                          meta.get("local_contrast", False))
        _check_trained_on(args, args.model_file, trained, data)
        _check_fits(model, args.model_file, data.input_shape, data.n_classes, args.dataset)
    else:
        _check_fits(model, args.model_file, trained["input_shape"], trained["n_classes"],
                    trained.get("name", "mnist"))
    return model, meta, data


def _model_files(args):
    """The ``--model-file`` list; for ``predict``, the IMAGE files that followed it (the list
    ends at the first name after its first that does not end in .npz: an image is never an
    .npz) are moved to ``args.images``."""
    files = args.model_file
    if isinstance(files, str):      # the default
        return [files]
    if args.command == "predict":
        end = next((i for i in range(1, len(files)) if not files[i].lower().endswith(".npz")),
                   len(files))
        files, args.images = files[:end], args.images + files[end:]
    return files


def _load_ensemble_for_eval(args, files, need_data=True):
    """The ensemble of ``files``, their metadata, and (``need_data``) the test labels, the
    number of classes and one test input per member, each prepared as its metadata says (a
    data set is loaded once per distinct preparation)."""
    from . import set_num_threads
    from .serialization import EnsembleError, load_ensemble

    set_num_threads(args.threads)
    try:
        ensemble, metas = load_ensemble(files)
    except EnsembleError as exc:
        raise _UserError(str(exc)) from None
    trained = _trained_on(metas[0], files[0])
    args.dataset = args.dataset or trained["name"]
    if not need_data:
        return ensemble, metas, None
    prepared, inputs, labels = {}, [], None
    for member, meta, path in zip(ensemble, metas, files):
        norm, local = meta.get("normalization"), meta.get("local_contrast", False)
        key = (repr(sorted((norm or {}).items())), local, np.dtype(member.dtype).str)
        if key not in prepared:
            data = _load_data(args, member.dtype, norm, local)
            _check_trained_on(args, path, trained, data)
            if not len(data.test_y):
                what = "test on" if args.command == "test" else "predict"
                raise _UserError(f"--data {args.data} has no test split (x_test, y_test) to "
                                 f"{what}")
            if not norm and args.command == "predict":
                _warn_refitted(args, data.normalization, path)
            # Only the test split is kept: the training split was loaded for its
            # normalization (or its check), and is the bulk of the memory.
            prepared[key] = data.test_x
            labels, n_classes = data.test_y, data.n_classes
        inputs.append(prepared[key])
    return ensemble, metas, (inputs, labels, n_classes)


def _ensemble_scores(ensemble, inputs, batch_size=1000):
    """The ensemble's outputs and each member's, batch by batch."""
    combined, members = [], [[] for _ in ensemble.members]
    for lo in range(0, inputs[0].shape[0], batch_size):
        combined.append(ensemble.forward([x[lo:lo + batch_size] for x in inputs]))
        for out, y in zip(members, ensemble.outputs):
            out.append(y)
    return np.concatenate(combined), [np.concatenate(m) for m in members]


def _averaging(ensemble):
    """What an ensemble averages, for its report."""
    if ensemble.head in ("LogSoftmax", "Softmax"):
        return "the mean of their class probabilities"
    return f"the mean of their outputs ({ensemble.head})"


def _scores(model, x, batch_size=1000):
    return np.concatenate([model.forward(x[i:i + batch_size])
                           for i in range(0, x.shape[0], batch_size)])


def _test(args):
    from .metrics import ConfusionMatrix
    from .train import predict

    files = _model_files(args)
    if len(files) > 1:
        return _test_ensemble(args, files)
    args.model_file = files[0]
    model, meta, data = _load_for_eval(args)
    if not len(data.test_y):
        raise _UserError(f"--data {args.data} has no test split (x_test, y_test) to test on")
    confusion = ConfusionMatrix(data.n_classes)
    confusion.add(predict(model, data.test_x, 1000), data.test_y)
    print(confusion)
    print(f"test accuracy: {100 * confusion.accuracy:.2f}%")
    return 0


def _test_ensemble(args, files):
    from .metrics import ConfusionMatrix

    ensemble, _, (inputs, labels, n_classes) = _load_ensemble_for_eval(args, files)
    scores, member_scores = _ensemble_scores(ensemble, inputs)
    print(f"ensemble of {len(files)} models, {_averaging(ensemble)}:")
    for path, y in zip(files, member_scores):
        print(f"  {path}: test accuracy {100 * np.mean(np.argmax(y, axis=1) == labels):.2f}%")
    confusion = ConfusionMatrix(n_classes)
    confusion.add(np.argmax(scores, axis=1), labels)
    print(confusion)
    print(f"test accuracy: {100 * confusion.accuracy:.2f}% (ensemble of {len(files)} models)")
    return 0


def _probabilities(scores, loss):
    """Class probabilities from the model's head: exp of log-probabilities for ``nll``, a
    softmax of the scores otherwise (tanh outputs and margin scores are not probabilities)."""
    if loss in (None, "nll"):
        p = np.exp(scores.astype(np.float64))
    else:
        z = scores.astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _write_csv(path, header, rows):
    from .serialization import atomic_write_text

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if path is None:
        sys.stdout.write(buf.getvalue())
        return
    try:
        atomic_write_text(path, buf.getvalue())
    except OSError as exc:
        raise _UserError(f"cannot write --output {path}: {exc.strerror or exc}; choose "
                         f"another --output") from None


def _refit_normalization(args, model, path=None):
    """The training set's normalization, for a model file that records none (saved by
    ``save_model`` without metadata): raw 0-255 pixels would silently cost accuracy.
    ``test`` refits it the same way."""
    from .datasets import DataNotFoundError

    path = path or args.model_file
    try:
        data = _load_data(args, model.dtype)
    except DataNotFoundError:
        raise _UserError(f"{path} records no input normalization, and the "
                         f"{args.dataset} training set to refit it from was not found; pass "
                         f"--data, or save the model with save_model(path, model, "
                         f"data.metadata()) ('fastconv train' does)") from None
    _warn_refitted(args, data.normalization, path)
    return data.normalization


def _warn_refitted(args, norm, path=None):
    print(f"fastconv predict: warning: {path or args.model_file} records no input "
          f"normalization; using the {args.dataset} training set's (mean {norm.mean:.4f}, std "
          f"{norm.std:.4f}), as 'fastconv test' does. Save models with save_model(path, "
          f"model, data.metadata()) or Trainer(metadata=data.metadata()) ('fastconv train' "
          f"does) to skip this", file=sys.stderr)


def _predict_cmd(args):
    files = _model_files(args)
    if len(files) > 1:
        return _predict_ensemble(args, files)
    args.model_file = files[0]
    if not args.images:
        model, meta, data = _load_for_eval(args)
        if not len(data.test_y):
            raise _UserError(f"--data {args.data} has no test split (x_test, y_test) to "
                             f"predict")
        if not meta.get("normalization"):
            _warn_refitted(args, data.normalization)
        pred = np.argmax(_scores(model, data.test_x), axis=1)
        output = args.output or "predictions.csv"
        _write_csv(output, ["Id", "Prediction"], ((i + 1, int(p)) for i, p in enumerate(pred)))
        print(f"wrote {len(pred)} predictions to {output}")
        return 0
    from .datasets.images import prepare_digits, read_digit_images

    model, meta, _ = _load_for_eval(args, need_data=False)
    _check_takes_digits(_trained_on(meta, args.model_file), "this model takes")
    names, images = read_digit_images(args.images)
    normalization = meta.get("normalization") or _refit_normalization(args, model)
    x = prepare_digits(images, normalization, meta.get("local_contrast", False),
                       dtype=model.dtype, names=names)
    probs = _probabilities(_scores(model, x), meta.get("loss"))
    rows = [[name, int(np.argmax(p))] + [f"{v:.4f}" for v in p] for name, p in zip(names, probs)]
    _write_csv(args.output, ["file", "label"] + [f"p{k}" for k in range(probs.shape[1])], rows)
    if args.output:
        print(f"wrote {len(rows)} predictions to {args.output}")
    return 0


def _check_takes_digits(trained, who):
    """Refuse IMAGE files for a model not trained on 32x32 padded digits."""
    if list(trained["input_shape"]) != [1, 32, 32] or trained.get("padding") != 2:
        raise _UserError(f"IMAGE files are prepared as MNIST digits (28x28, padded to "
                         f"32x32); {who} {tuple(trained['input_shape'])} inputs "
                         f"from --dataset {trained.get('name')}. Run predict without IMAGE to "
                         f"label the data set's test split")


def _predict_ensemble(args, files):
    if not args.images:
        ensemble, _, (inputs, _, _) = _load_ensemble_for_eval(args, files)
        pred = np.argmax(_ensemble_scores(ensemble, inputs)[0], axis=1)
        output = args.output or "predictions.csv"
        _write_csv(output, ["Id", "Prediction"], ((i + 1, int(p)) for i, p in enumerate(pred)))
        print(f"wrote {len(pred)} predictions of the ensemble of {len(files)} models to "
              f"{output}")
        return 0
    from .datasets.images import prepare_digits, read_digit_images

    ensemble, metas, _ = _load_ensemble_for_eval(args, files, need_data=False)
    _check_takes_digits(_trained_on(metas[0], files[0]), "these models take")
    names, images = read_digit_images(args.images)
    inputs = []
    for member, meta, path in zip(ensemble, metas, files):
        normalization = meta.get("normalization") or _refit_normalization(args, member, path)
        inputs.append(prepare_digits(images, normalization, meta.get("local_contrast", False),
                                     dtype=member.dtype, names=names))
    scores = _ensemble_scores(ensemble, inputs)[0]
    # The ensemble's output is of its members' kind: log-probabilities for the nll head.
    probs = _probabilities(scores, "nll" if ensemble.head == "LogSoftmax" else ensemble.head)
    rows = [[name, int(np.argmax(p))] + [f"{v:.4f}" for v in p] for name, p in zip(names, probs)]
    _write_csv(args.output, ["file", "label"] + [f"p{k}" for k in range(probs.shape[1])], rows)
    if args.output:
        print(f"wrote {len(rows)} predictions of the ensemble of {len(files)} models to "
              f"{args.output}")
    return 0


# -- errors -------------------------------------------------------------------------------
class _UserError(Exception):
    """A one-line message for the user (exit status 1)."""


# Trainer setting -> the option that sets it.
_OPTION_OF = {"lr": "--learning-rate", "weight_decay": "--weight-decay",
              "momentum": "--momentum", "max_iter": "--max-iter", "t0_epochs": "--t0",
              "after_epoch": "--switch-to-lbfgs-after", "seed": "--seed",
              "loss": "--loss", "name": "--optimizer", "batch_size": "--batch-size",
              "nesterov": "--nesterov", "n_train": "--size (training samples)",
              "label_smoothing": "--label-smoothing", "validation": "--validation",
              "validation.count": "--validation", "schedule": "--schedule",
              "schedule.name": "--schedule", "callbacks.early_stopping.patience":
              "--early-stopping"}


def _option_of(setting):
    """The ``fastconv train`` option behind a setting's dotted name in a checkpoint."""
    if setting in _OPTION_OF:
        return _OPTION_OF[setting]
    head, _, rest = setting.partition(".")
    if head == "optimizer":
        last = rest.rsplit(".", 1)[-1]
        return _OPTION_OF.get(last, f"--optimizer-option {last}")
    if head == "schedule":
        return f"--schedule-option {rest}"
    return setting


def _mismatch_message(exc, save):
    from .train import _show

    items, model_diffs = [], []
    for name, old, new in exc.differences:
        if name == "data":
            # Fingerprints mean nothing to a user; what made them differ does.
            items.append("the training data (--data, --size, --local-contrast: other images "
                         "or another preprocessing)")
        elif name.startswith("model"):
            model_diffs.append(f"{name} {_show(old)} there, {_show(new)} now")
        else:
            items.append(f"{_option_of(name)} {_show(old)} there, {_show(new)} now")
    if model_diffs:
        more = f", and {len(model_diffs) - 2} more" if len(model_diffs) > 2 else ""
        items.append("the network (--model, --type, --rotate, --dropout, --extra-conv: "
                     + "; ".join(model_diffs[:2]) + more + ")")
    return (f"{save} holds a run trained with other settings: {'; '.join(items)}. Rerun with "
            f"--no-resume to start over (replacing that run), or pass another --save folder")


def _one_line(exc, args):
    """The message and exit status for a user error, or None for anything else (a bug)."""
    from ._errors import environmental_error
    from .datasets import DataFileError, DataNotFoundError
    from .datasets.images import ImageError
    from .serialization import ModelFileError
    from .train import CheckpointError, SaveFolderError, SettingsMismatch, TrainingDiverged

    if isinstance(exc, _UserError):
        return str(exc)
    name = getattr(args, "dataset", None) or "mnist"
    if isinstance(exc, DataNotFoundError):
        first = str(exc).splitlines()[0]
        env = " or set FASTCONV_DATA" if name == "mnist" else ""
        return (f"{first} Put the four .gz files in a folder and pass --data FOLDER{env} "
                f"(--debug lists every place tried)")
    if isinstance(exc, DataFileError):
        where = "--data (or FASTCONV_DATA)" if name == "mnist" and not args.data else "--data"
        return f"{exc}; --dataset {name}: {where} must name {DATA_DESCRIPTION[name]}"
    if isinstance(exc, SettingsMismatch):
        return _mismatch_message(exc, args.save)
    if isinstance(exc, CheckpointError):
        return (f"checkpoint {exc}; nothing was trained. Rerun with --no-resume to start "
                f"over, or pass another --save folder")
    if isinstance(exc, ModelFileError):
        return (f"model file {exc}; pass --model-file with a model.npz written by "
                f"'fastconv train'")
    if isinstance(exc, SaveFolderError):
        return f"--save {exc.path}: {exc.problem}; pass another --save folder"
    if isinstance(exc, ImageError):
        return f"image {exc}"
    if isinstance(exc, TrainingDiverged):
        return f"{exc}; the logs and the last epoch's checkpoint are kept"
    cause = environmental_error(exc)
    if cause is not None:
        where = f"{cause.filename}: " if cause.filename else ""
        if cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = "free space and rerun the same command"
            if args.command == "train":
                fix += " (it resumes from the last finished epoch)"
        elif cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = ("give yourself access to it, or pass another " +
                   {"train": "--data or --save", "test": "--data or --model-file",
                    "predict": "--model-file or --output"}.get(args.command, "file"))
        else:
            fix = "check the disk and rerun the same command"
        return f"{where}{cause.strerror or cause}; {fix}"
    return None


def main(argv=None):
    """Run the ``fastconv`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 1 for a runtime error (bad data, model or checkpoint
        file, unwritable folder, divergence), 130 when interrupted. Usage errors exit with
        status 2 through ``SystemExit``.
    """
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "test": _test, "predict": _predict_cmd}[args.command](args)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last epoch",
              file=sys.stderr)
        return 130
    except Exception as exc:
        message = None if getattr(args, "debug", False) else _one_line(exc, args)
        if message is None:
            raise
        print(f"fastconv {args.command}: error: {message}", file=sys.stderr)
        return RUNTIME_ERROR


if __name__ == "__main__":
    sys.exit(main())
