"""Comparison figures: input, reference and every model's output for one validation image
(thesis Figs. 6.1, 6.3, 6.5, 6.9–6.11, 6.13–6.15) and zoomed crops of them (Figs. 6.2, 6.4, 6.6, 6.12, 6.16).

The plots of numbers (training curves, the own-metric race, the models' ranking) are in :mod:`lossbench.report.plots`.
"""

from __future__ import annotations

import logging
import math
import string
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from lossbench.core.io import save_figure  # noqa: E402
from lossbench.data.valset import ImageFile, resolve_image_id  # noqa: E402
from lossbench.registry import PACKAGE, Registry  # noqa: E402

log = logging.getLogger(__name__)


def _display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) → what imshow takes, clipped to [0, 1] as a display would."""
    image = np.clip(image, 0.0, 1.0)
    return image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)


def _crop(image: np.ndarray, box: list[int] | None) -> np.ndarray:
    if box is None:
        return image
    left, top, width, height = box
    if top + height > image.shape[1] or left + width > image.shape[2]:
        raise ValueError(
            f"crop box {box} (left, top, width, height) exceeds the image size {image.shape[2]}×{image.shape[1]}"
        )
    return image[:, top : top + height, left : left + width]


def fit_box(box: list[int], width: int, height: int, where: str) -> list[int]:
    """The crop box [left, top, width, height] clipped to a ``width`` × ``height`` image.

    The validation images' sizes are known only once the data are there (fastMRI brain volumes
    narrower than the crop give W × W images, e.g. 213 × 213), so a box that reaches past the image
    is clipped to it, with a warning in the figure's log; one that starts outside the image cannot be
    clipped to anything and is an error.

    Raises:
        ValueError: ``box`` starts outside the image (one line naming ``where`` and the image size).
    """
    left, top, box_width, box_height = box
    if left >= width or top >= height:
        raise ValueError(
            f"{where}: box {box} (left, top, width, height) starts outside the {width}×{height} validation image;"
            f" expected left < {width} and top < {height}"
        )
    fitted = [left, top, min(box_width, width - left), min(box_height, height - top)]
    if fitted != list(box):
        log.warning(
            "%s: box %s (left, top, width, height) reaches past the %d×%d validation image; clipped to %s",
            where,
            list(box),
            width,
            height,
            fitted,
        )
    return fitted


def load_panels(
    valset_path: str | Path,
    outputs: dict[str, str | Path],
    image: str | int,
    lpips_pretrained: bool = True,
    registry: Registry = PACKAGE,
) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """The id of ``image`` (see :func:`resolve_image_id`) and its (label, (C, H, W) image) panels:
    the input, the reference and each loss's output.

    ``lpips_pretrained`` False labels the LPIPS+l2 panel as made with an untrained AlexNet trunk; ``registry`` (the
    configuration's losses) labels the panels.
    """
    with ImageFile(valset_path) as valset:
        image_id = resolve_image_id(valset.ids, image, valset_path)
        panels = [("Input", valset.read("input", image_id)), ("Reference", valset.read("target", image_id))]
    for loss, path in outputs.items():
        with ImageFile(path) as output:
            panels.append((registry.loss_label(loss, lpips_pretrained), output.read("output", image_id)))
    return image_id, panels


def thesis_figure(
    valset_path: str | Path,
    outputs: dict[str, str | Path],
    spec: dict,
    figure: str,
    crop: bool,
    seed: int,
    out_paths: list[str | Path],
    lpips_pretrained: bool = True,
    registry: Registry = PACKAGE,
) -> None:
    """A configured comparison figure (``figures.<figure>`` of the configuration) or its zoomed crop.

    Args:
        valset_path: The task's validation set.
        outputs: Loss → its model's outputs on the validation set.
        spec: The figure's configuration: ``task``, ``image``, optionally ``box`` (clipped to the
            image, see :func:`fit_box`).
        figure: The panel figure's id (``fig_6_1``), for the crop's title.
        crop: Draw the zoomed crop instead of the whole image.
        seed: The models' seed, for the title.
        out_paths: Files to write.
        lpips_pretrained: As in :func:`load_panels`.
        registry: As in :func:`load_panels`.
    """
    image_id, panels = load_panels(valset_path, outputs, spec["image"], lpips_pretrained, registry)
    kind = (
        "Zoomed-in crop of " + figure.replace("fig_", "Fig. ").replace("_", ".")
        if crop
        else "Input, reference and outputs"
    )
    box = spec.get("box")
    if box is not None:
        height, width = panels[1][1].shape[1:]  # the reference
        box = fit_box(box, width, height, f"figures.{figure}.box (image {image_id})")
    comparison_figure(
        panels, out_paths, f"{kind}: {spec['task']} validation image {image_id} (seed {seed})", box, crop=crop
    )


def comparison_figure(
    panels: list[tuple[str, np.ndarray]],
    out_paths: list[str | Path],
    title: str,
    box: list[int] | None = None,
    crop: bool = False,
) -> None:
    """Draw ``panels`` on a grid labelled (a), (b), ... and save to every path in ``out_paths`` (PNG, PDF).

    Args:
        panels: (label, (C, H, W) image) pairs, values nominally in [0, 1].
        out_paths: Files to write; the format follows the suffix.
        title: Figure title.
        box: Crop box [left, top, width, height]; outlined on the reference unless ``crop``.
        crop: Show only the ``box`` region of every panel (the zoomed-crop figures).
    """
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    shown = [(label, _crop(image, box) if crop else image) for label, image in panels]
    height, width = shown[0][1].shape[1:]
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 3.2 * rows * height / width + 0.6), squeeze=False
    )
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= len(shown):
            continue
        label, image = shown[index]
        axis.imshow(_display(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axis.set_title(f"({string.ascii_lowercase[index]}) {label}", fontsize=10)
        if box is not None and not crop and label == "Reference":
            axis.add_patch(Rectangle((box[0], box[1]), box[2], box[3], fill=False, edgecolor="yellow", linewidth=1.2))
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    save_figure(figure, out_paths)
