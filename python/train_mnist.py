"""Train the homework's ConvNet on MNIST through fastconv's public API.

    python python/train_mnist.py --epochs 2 --size small --save results/example

Set FASTCONV_DATA to the folder holding the four MNIST .gz files (or pass --data).
The full set of options (optimizers, losses, rotation, ...) is in ``fastconv train --help``.
"""
import argparse

import fastconv
from fastconv import nn, optim
from fastconv.datasets import load_mnist
from fastconv.train import Trainer


def build_parser():
    """The script's options, every one with its help text."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=None,
                        help="folder with the four MNIST .gz files (default: $FASTCONV_DATA, "
                             "the user cache, then a download)")
    parser.add_argument("--size", default="small", choices=["small", "full"],
                        help="small = first 6,000 train / 1,000 test images; full = all")
    parser.add_argument("--epochs", type=int, default=2,
                        help="total epochs (a rerun with the same options resumes)")
    parser.add_argument("--rotate", type=float, default=0.0,
                        help="sigma in radians of random training-image rotations (0: off)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the kernels")
    parser.add_argument("--save", default="results/example",
                        help="folder for the logs, model.npz and checkpoint.npz")
    return parser


def main():
    args = build_parser().parse_args()

    fastconv.set_num_threads(args.threads)
    data = load_mnist(args.data, size=args.size)                 # float32, the default
    model = nn.build_model("convnet", loss="nll", rotate=args.rotate, seed=1)
    trainer = Trainer(model, loss="nll", optimizer=optim.spec("sgd", lr=1e-3), batch_size=1,
                      seed=1, save_dir=args.save)
    history = trainer.fit(data, epochs=args.epochs)     # the model keeps data's normalization
    print(f"final test accuracy: {100 * history[-1]['test_accuracy']:.2f}% "
          f"(model in {args.save}/model.npz)")


if __name__ == "__main__":
    main()
