"""Pictures people would rather look at than read: faces with keypoints, training curves."""
import matplotlib

matplotlib.use("Agg")  # no display on CI or servers
import matplotlib.pyplot as plt
import numpy as np

from keypoints.columns import IMAGE_SIZE, PIXEL_OFFSET

# imshow's extent in keypoint coordinates: pixel i spans [i + PIXEL_OFFSET - 0.5, i + PIXEL_OFFSET + 0.5].
EXTENT = (PIXEL_OFFSET - 0.5, IMAGE_SIZE - 0.5 + PIXEL_OFFSET, IMAGE_SIZE - 0.5 + PIXEL_OFFSET, PIXEL_OFFSET - 0.5)


def faces_figure(images, true_keypoints, predicted_keypoints, columns=8):
    """A grid of faces: true keypoints as green dots, predicted as red crosses."""
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows + 0.4), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index >= count:
            continue
        axis.imshow(images[index], cmap="gray", vmin=0, vmax=255, extent=EXTENT)
        axis.scatter(true_keypoints[index, 0::2], true_keypoints[index, 1::2], s=6, c="lime", marker="o")
        axis.scatter(predicted_keypoints[index, 0::2], predicted_keypoints[index, 1::2], s=10, c="red", marker="x")
    figure.suptitle("held-out faces: true (green) vs predicted (red)", fontsize=9)
    figure.tight_layout()
    return figure


def curves_figure(histories):
    """Loss and MAE per epoch, training and validation, for each {name: history DataFrame}."""
    figure, axes = plt.subplots(len(histories), 2, figsize=(10, 3.2 * len(histories)), squeeze=False)
    for (name, history), (loss_axis, mae_axis) in zip(histories.items(), axes):
        for axis, metric, label in ((loss_axis, "loss", "MSE loss (px²)"), (mae_axis, "mae", "MAE (px)")):
            axis.plot(history["epoch"], history[metric], "o-", label="training")
            axis.plot(history["epoch"], history[f"val_{metric}"], "o-", label="validation")
            axis.set_title(f"{name}: {label}")
            axis.set_xlabel("epoch")
            if np.all(history[[metric, f"val_{metric}"]].to_numpy() > 0):
                axis.set_yscale("log")
            axis.legend()
    figure.tight_layout()
    return figure
