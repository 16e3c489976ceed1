"""Training curves and confusion-matrix plots (matplotlib, no display needed)."""

import csv


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    from mobilecls.files import replacing

    with replacing(path) as temporary:  # never a half-written image, even when killed
        figure.savefig(temporary, dpi=110, bbox_inches="tight")


def plot_curves(history_csv, path):
    """Loss and accuracy per epoch (train and val) from a run's history.csv."""
    plt = _pyplot()
    with open(history_csv, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(row["epoch"]) + 1 for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axis in (("loss", left), ("accuracy", right)):
        for prefix in ("", "val_"):
            if rows and prefix + key in rows[0]:
                axis.plot(epochs, [float(row[prefix + key]) for row in rows], label=(prefix or "train_") + key)
        axis.set_xlabel("epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    _save(figure, path)
    plt.close(figure)


def plot_confusion(confusion, class_names, path):
    """The confusion matrix (rows: true class, columns: predicted), with counts."""
    plt = _pyplot()
    size = max(4, 0.6 * len(class_names))
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(class_names) <= 20:
        for i, row in enumerate(confusion):
            for j, count in enumerate(row):
                axis.text(j, i, str(count), ha="center", va="center", fontsize=7)
    _save(figure, path)
    plt.close(figure)
