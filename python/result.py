"""Load a saved model, predict the MNIST test set and write ``Id,Prediction`` CSV.

    python python/result.py results/example/model.npz predictions.csv
"""
import argparse
import csv

import numpy as np

from fastconv.datasets import Normalization, load_mnist
from fastconv.serialization import load_model


def build_parser():
    """The script's options, every one with its help text."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("model_file", help="model.npz written by fastconv train or "
                                           "python/train_mnist.py")
    parser.add_argument("output", nargs="?", default="predictions.csv",
                        help="CSV file to write (Id,Prediction, one row per test image)")
    parser.add_argument("--data", default=None,
                        help="folder with the four MNIST .gz files (default: $FASTCONV_DATA, "
                             "the user cache, then a download)")
    parser.add_argument("--size", default="full", choices=["small", "full"],
                        help="full = the 10,000 test images; small = the first 1,000")
    return parser


def main():
    args = build_parser().parse_args()

    model, meta = load_model(args.model_file)
    norm = Normalization.from_dict(meta["normalization"])
    data = load_mnist(args.data, size=args.size, dtype=model.dtype, normalize=norm)
    pred = np.concatenate([np.argmax(model.forward(data.test_x[i:i + 1000]), axis=1)
                           for i in range(0, len(data.test_x), 1000)])
    with open(args.output, "w", newline="") as f:
        # "\n" as the fastconv command writes: the csv module's default is "\r\n".
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Id", "Prediction"])
        writer.writerows((i + 1, int(p)) for i, p in enumerate(pred))
    print(f"accuracy {100 * np.mean(pred == data.test_y):.2f}%; wrote {args.output}")


if __name__ == "__main__":
    main()
