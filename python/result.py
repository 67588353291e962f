"""Load a saved model, predict the MNIST test set and write ``Id,Prediction`` CSV.

    python python/result.py results/example/model.npz predictions.csv
"""
import argparse
import csv

import numpy as np

from fastconv.datasets import Normalization, load_mnist
from fastconv.serialization import load_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file")
    parser.add_argument("output", nargs="?", default="predictions.csv")
    parser.add_argument("--data", default=None)
    parser.add_argument("--size", default="full", choices=["small", "full"])
    args = parser.parse_args()

    model, meta = load_model(args.model_file)
    norm = Normalization.from_dict(meta["normalization"])
    data = load_mnist(args.data, size=args.size, dtype=model.dtype, normalize=norm)
    pred = np.concatenate([np.argmax(model.forward(data.test_x[i:i + 1000]), axis=1)
                           for i in range(0, len(data.test_x), 1000)])
    with open(args.output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Id", "Prediction"])
        writer.writerows((i + 1, int(p)) for i, p in enumerate(pred))
    print(f"accuracy {100 * np.mean(pred == data.test_y):.2f}%; wrote {args.output}")


if __name__ == "__main__":
    main()
