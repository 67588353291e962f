"""Train the homework's ConvNet on MNIST through fastconv's public API.

    python python/train_mnist.py --epochs 2 --size small --save results/example

Set FASTCONV_DATA to the folder holding the four MNIST .gz files (or pass --data).
The full set of options (optimizers, losses, rotation, ...) is in ``fastconv train --help``.
"""
import argparse

import numpy as np

import fastconv
from fastconv import nn
from fastconv.datasets import load_mnist
from fastconv.train import Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--size", default="small", choices=["small", "full"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rotate", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", default="results/example")
    args = parser.parse_args()

    fastconv.set_num_threads(args.threads)
    data = load_mnist(args.data, size=args.size, dtype=np.float32)
    model = nn.build_model("convnet", loss="nll", rotate=args.rotate, dtype=np.float32, seed=1)
    trainer = Trainer(model, loss="nll", optimizer="sgd", lr=1e-3, batch_size=1, seed=1,
                      save_dir=args.save,
                      metadata={"normalization": data.normalization.to_dict()})
    history = trainer.fit(data.train_x, data.train_y, data.test_x, data.test_y,
                          epochs=args.epochs)
    print(f"final test accuracy: {100 * history[-1]['test_accuracy']:.2f}% "
          f"(model in {args.save}/model.npz)")


if __name__ == "__main__":
    main()
