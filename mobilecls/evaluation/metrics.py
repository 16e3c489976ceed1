"""Classification metrics from logits and labels (numpy only): the same for fit and eval."""

import numpy as np


def confusion_matrix(labels, predictions, num_classes):
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def top_k_accuracy(labels, scores, k):
    """Fraction of samples whose label is among the k highest scores."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def classification_metrics(labels, scores, class_names):
    """Accuracy, top-5, macro precision / recall / F1 and the confusion matrix.

    Args:
        labels: (N,) integer labels.
        scores: (N, C) logits or probabilities.
        class_names: the C class names, in label order.

    Returns:
        A JSON-ready dict.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != (len(labels), len(class_names)):
        raise ValueError(f"scores must have shape ({len(labels)}, {len(class_names)}), got {scores.shape}")
    predictions = scores.argmax(axis=1)
    counts = confusion_matrix(labels, predictions, len(class_names))
    true_positive = np.diag(counts).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.nan_to_num(true_positive / counts.sum(axis=0))
        recall = np.nan_to_num(true_positive / counts.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return {
        "samples": int(len(labels)),
        "accuracy": float(np.mean(predictions == labels)),
        "top5": top_k_accuracy(labels, scores, 5),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f)}
                      for name, p, r, f in zip(class_names, precision, recall, f1, strict=True)},
        "confusion": counts.tolist(),
        "class_names": list(class_names),
    }
