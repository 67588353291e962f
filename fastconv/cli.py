"""The ``fastconv`` command: ``train``, ``test`` and ``predict``, with the homework's options."""
import argparse
import csv
import io
import os
import sys

import numpy as np

from ._threads import max_threads
from .nn.loss import LOSSES
from .nn.models import MODELS
from .optim import OPTIMIZERS

__all__ = ["main", "build_parser"]


def _thread_count(text):
    """argparse type of --threads: an int in [1, max_threads()], refused clearly otherwise."""
    n = int(text)
    if not 1 <= n <= max_threads():
        raise argparse.ArgumentTypeError(f"must be in [1, {max_threads()}] (64 x the usable "
                                         f"cores); got {n}")
    return n


def _add_data_options(p):
    p.add_argument("--data", default=None,
                   help="folder with the four MNIST .gz files (default: $FASTCONV_DATA, the "
                        "user cache, then a download)")
    p.add_argument("--size", choices=["full", "small"], default="full",
                   help="full = 60,000 train / 10,000 test; small = first 6,000 / 1,000 "
                        "(default: full)")
    p.add_argument("--threads", type=_thread_count, default=2,
                   help="CPU threads (default: 2)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastconv", description="Train and evaluate the MNIST homework's networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model, saving logs and the model every epoch",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_data_options(t)
    t.add_argument("--seed", type=int, default=1, help="fixes every random choice")
    t.add_argument("--model", choices=list(MODELS),
                   default="convnet", help="network (convnet-max: max pooling and ReLU)")
    t.add_argument("--loss", choices=list(LOSSES), default="nll")
    t.add_argument("--optimization", type=str.upper, choices=[o.upper() for o in OPTIMIZERS],
                   default="SGD")
    t.add_argument("--learning-rate", type=float, default=1e-3,
                   help="SGD and L-BFGS step size; ASGD eta0")
    t.add_argument("--batch-size", type=int, default=1,
                   help="1 = pure stochastic; a batch's gradient is the mean over its samples")
    t.add_argument("--weight-decay", type=float, default=0.0, help="SGD only")
    t.add_argument("--momentum", type=float, default=0.0, help="SGD only")
    t.add_argument("--t0", type=float, default=1,
                   help="ASGD: start averaging after t0 epochs")
    t.add_argument("--max-iter", type=int, default=2,
                   help="CG and L-BFGS: iterations per mini-batch")
    t.add_argument("--type", choices=["double", "float"], default="double",
                   help="float64 or float32 (float is much faster)")
    t.add_argument("--save", default="results", help="folder for logs and the model")
    t.add_argument("--epochs", type=int, default=10, help="total epochs (resumes if the "
                   "save folder holds a checkpoint)")
    t.add_argument("--rotate", type=float, default=0.0, metavar="SIGMA",
                   help="random rotation of training images, angle ~ N(0, SIGMA^2) radians "
                        "(the homework's best: 0.2)")
    t.add_argument("--switch-to-lbfgs-after", type=int, default=None, metavar="K",
                   help="switch to L-BFGS after epoch K")
    t.add_argument("--dropout", type=float, default=0.0, help="dropout before the fully "
                   "connected layers")
    t.add_argument("--extra-conv", action="store_true", help="add a third convolution layer")
    t.add_argument("--local-contrast", action="store_true",
                   help="local contrastive normalization of the inputs (7-tap Gaussian)")
    t.add_argument("--no-resume", action="store_true", help="start over even if the save "
                   "folder holds a checkpoint")
    t.add_argument("--visualize", action="store_true",
                   help="write PNGs of the first two layers' filters and of training inputs")
    t.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bars (auto: only on a terminal)")

    for name, helptext in (("test", "evaluate a saved model on the test set"),
                           ("predict", "write Id,Prediction CSV for the test set")):
        p = sub.add_parser(name, help=helptext,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        _add_data_options(p)
        p.add_argument("--model-file", default=os.path.join("results", "model.npz"),
                       help="model saved by 'fastconv train'")
        if name == "predict":
            p.add_argument("--output", default="predictions.csv", help="CSV to write")
    return parser


def _load_data(args, dtype, normalization=None, local_contrast=False):
    from .datasets import Normalization, load_mnist

    norm = Normalization.from_dict(normalization) if normalization else True
    return load_mnist(args.data, size=args.size, dtype=dtype, normalize=norm,
                      local_contrast=local_contrast)


def _train(args):
    from . import nn, set_num_threads
    from .train import Trainer

    set_num_threads(args.threads)
    dtype = np.float32 if args.type == "float" else np.float64
    data = _load_data(args, dtype, local_contrast=args.local_contrast)
    model = nn.build_model(args.model, loss=args.loss, extra_conv=args.extra_conv,
                           dropout=args.dropout, rotate=args.rotate, dtype=dtype,
                           seed=args.seed)
    print(model)
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    metadata = {"normalization": data.normalization.to_dict() if data.normalization else None,
                "local_contrast": args.local_contrast, "model": args.model,
                "options": {k: v for k, v in vars(args).items() if k != "func"}}
    trainer = Trainer(model, loss=args.loss, optimizer=args.optimization.lower(),
                      batch_size=args.batch_size, lr=args.learning_rate,
                      weight_decay=args.weight_decay, momentum=args.momentum,
                      t0_epochs=args.t0, max_iter=args.max_iter,
                      switch_to_lbfgs_after=args.switch_to_lbfgs_after, seed=args.seed,
                      threads=args.threads, save_dir=args.save, progress=progress,
                      metadata=metadata)
    if args.visualize:
        from .visualize import save_input_grid
        print("wrote", save_input_grid(os.path.join(args.save, "inputs.png"), data.train_x))
    trainer.fit(data.train_x, data.train_y, data.test_x, data.test_y, epochs=args.epochs,
                resume=not args.no_resume)
    if args.visualize:
        from .visualize import visualize_model
        for path in visualize_model(model, args.save):
            print("wrote", path)
    return 0


def _load_for_eval(args):
    from . import set_num_threads
    from .serialization import load_model

    set_num_threads(args.threads)
    model, meta = load_model(args.model_file)
    data = _load_data(args, model.dtype, meta.get("normalization"),
                      meta.get("local_contrast", False))
    return model, meta, data


def _test(args):
    from .metrics import ConfusionMatrix
    from .train import predict

    model, meta, data = _load_for_eval(args)
    confusion = ConfusionMatrix(10)
    confusion.add(predict(model, data.test_x, 1000), data.test_y)
    print(confusion)
    print(f"test accuracy: {100 * confusion.accuracy:.2f}%")
    return 0


def _predict_cmd(args):
    from .serialization import atomic_write_text
    from .train import predict

    model, meta, data = _load_for_eval(args)
    pred = predict(model, data.test_x, 1000)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Id", "Prediction"])
    writer.writerows((i + 1, int(p)) for i, p in enumerate(pred))
    atomic_write_text(args.output, buf.getvalue())
    print(f"wrote {len(pred)} predictions to {args.output}")
    return 0


def main(argv=None):
    from .train import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "test": _test, "predict": _predict_cmd}[args.command](args)
    except TrainingDiverged as exc:
        print(f"fastconv: {exc}; the logs and the last epoch's checkpoint are kept",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last epoch",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
