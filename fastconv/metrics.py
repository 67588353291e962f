"""Classification metrics: the confusion matrix the homework printed every epoch."""
import numpy as np

__all__ = ["ConfusionMatrix"]


class ConfusionMatrix:
    """Counts of (true class, predicted class) pairs.

    Rows are true classes, columns predictions, as Torch7's ``optim.ConfusionMatrix``.
    """

    def __init__(self, n_classes=10):
        self.n_classes = int(n_classes)
        self.matrix = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def add(self, predicted, target):
        """Count a batch of predicted and true labels.

        Parameters
        ----------
        predicted, target : array_like of int, shape (N,)
            Labels in ``[0, n_classes)``.
        """
        predicted, target = np.asarray(predicted), np.asarray(target)
        if predicted.shape != target.shape or predicted.ndim != 1:
            raise ValueError(f"ConfusionMatrix.add: predicted and target must be 1-D of the "
                             f"same length; got shapes {predicted.shape} and {target.shape}")
        for name, labels in (("predicted", predicted), ("target", target)):
            if labels.size and (labels.min() < 0 or labels.max() >= self.n_classes):
                raise ValueError(f"ConfusionMatrix.add: {name} labels must lie in "
                                 f"[0, {self.n_classes}); got {labels.max()} (a model or data "
                                 f"set with more classes than the matrix)")
        np.add.at(self.matrix, (target, predicted), 1)

    def reset(self):
        self.matrix[...] = 0

    @property
    def total(self):
        return int(self.matrix.sum())

    @property
    def accuracy(self):
        """Global accuracy: correct / total."""
        return float(np.trace(self.matrix) / self.total) if self.total else 0.0

    @property
    def per_class_accuracy(self):
        rows = self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows > 0, np.diag(self.matrix) / np.maximum(rows, 1), np.nan)

    @property
    def mean_class_accuracy(self):
        """Average of the per-class accuracies over the classes that occur."""
        acc = self.per_class_accuracy
        return float(np.nanmean(acc)) if np.any(~np.isnan(acc)) else 0.0

    def __str__(self):
        width = max(5, len(str(self.matrix.max())) + 1)
        lines = ["ConfusionMatrix:"]
        for k in range(self.n_classes):
            row = "".join(f"{v:>{width}d}" for v in self.matrix[k])
            acc = self.per_class_accuracy[k]
            lines.append(f"[{row} ]  {100 * acc:6.2f}%  [class: {k}]")
        lines.append(f" + average row correct: {100 * self.mean_class_accuracy:.2f}%")
        lines.append(f" + global correct: {100 * self.accuracy:.2f}%")
        return "\n".join(lines)
