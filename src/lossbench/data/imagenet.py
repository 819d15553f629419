"""The denoising training set: a seeded sample of ImageNet images written to a manifest (thesis §4.1).

The thesis trained on "a subset of 9000 images from the ImageNet dataset". :func:`write_manifest`
draws such a subset from any folder tree of JPEG/PNG files (ImageNet's ``train/<wnid>/*.JPEG``
layout included) and inspects every drawn image: unreadable, grayscale and too-small images are
skipped and listed in a report, CMYK, palette and alpha images are kept and converted to RGB when
read. Training reads the manifest (:func:`read_manifest`), not the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from lossbench.core.io import CRLF, read_csv, write_rows
from lossbench.core.seeding import derive_seed
from lossbench.data.images import list_images

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "width", "height", "mode")
REPORT_COLUMNS = ("path", "problem", "action")
#: PIL modes without colour: noise on a grey image would teach the network nothing about chroma.
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
#: Colour modes that ``read_rgb`` converts to RGB.
CONVERTED_MODES = {"CMYK", "P", "PA", "RGBA", "RGBX", "YCbCr", "LAB", "HSV"}


def inspect_image(path: Path, min_side: int) -> tuple[str | None, tuple[int, int, str]]:
    """Decode ``path`` fully; return (problem or None, (width, height, mode))."""
    try:
        with Image.open(path) as image:
            image.load()
            width, height, mode = image.width, image.height, image.mode
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return f"unreadable ({str(error).splitlines()[0] if str(error) else type(error).__name__})", (0, 0, "")
    if mode in GRAY_MODES:
        return f"grayscale (mode {mode})", (width, height, mode)
    if mode != "RGB" and mode not in CONVERTED_MODES:
        return f"unsupported mode {mode}", (width, height, mode)
    if min(width, height) < min_side:
        return f"too small ({width}×{height}, need at least {min_side}×{min_side})", (width, height, mode)
    return None, (width, height, mode)


def write_manifest(
    source: str | Path, manifest: str | Path, report: str | Path, count: int, seed: int, min_side: int
) -> int:
    """Write a manifest of ``count`` usable images drawn from ``source`` in a seeded order.

    Images are visited in a permutation fixed by ``seed`` and inspected until ``count`` are usable;
    so the same folder and seed give the same subset. Skipped and converted images go to ``report``
    (CSV: path, problem, action). Both files are written atomically, and ``manifest`` only when the
    folder holds enough usable images, so an earlier manifest survives a failed run.

    Args:
        source: Folder tree of image files.
        manifest: Output CSV with columns :data:`MANIFEST_COLUMNS`, absolute paths.
        report: Output CSV of the skipped and converted images.
        count: Number of images to draw (9000 in the thesis).
        seed: Seed of the draw.
        min_side: Smallest allowed image side (the training crop).

    Returns:
        The number of images in the manifest.

    Raises:
        ValueError: Fewer than ``count`` usable images in ``source``.
        FileNotFoundError: ``source`` is missing or holds no image files.
    """
    files = list(list_images(source).values())
    order = np.random.default_rng(derive_seed(seed, "imagenet-subset")).permutation(len(files))
    rows, problems = [], []
    for index in order:
        path = files[index].resolve()
        problem, (width, height, mode) = inspect_image(path, min_side)
        if problem is not None:
            problems.append((str(path), problem, "skipped"))
            continue
        if mode != "RGB":
            problems.append((str(path), f"mode {mode}", "converted to RGB when read"))
        rows.append((str(path), width, height, mode))
        if len(rows) == count:
            break
    write_csv_atomic(report, REPORT_COLUMNS, problems)
    skipped = sum(action == "skipped" for _, _, action in problems)
    log.info(
        "%s: %d images drawn, %d skipped, %d converted (see %s)",
        source,
        len(rows),
        skipped,
        len(problems) - skipped,
        report,
    )
    if len(rows) < count:
        raise ValueError(
            f"{source}: only {len(rows)} usable images of the {count} requested ({len(files)} files, {skipped} skipped:"
            f" see {report})"
        )
    write_csv_atomic(manifest, MANIFEST_COLUMNS, rows)
    return len(rows)


def read_manifest(path: str | Path) -> list[Path]:
    """Image paths listed in a manifest written by :func:`write_manifest`.

    Raises:
        ValueError: The file lacks the manifest header, lists no images, or names a missing file.
    """
    header, rows = read_csv(path)
    if tuple(header) != MANIFEST_COLUMNS:
        raise ValueError(f"{path}: not an image manifest, expected the header {','.join(MANIFEST_COLUMNS)}")
    paths = [Path(row["path"]) for row in rows]
    if not paths:
        raise ValueError(f"{path}: manifest lists no images")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} listed images are missing, e.g. {missing[0]}; rerun the manifest rule"
        )
    return paths


def write_csv_atomic(path: str | Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Write ``header`` and ``rows`` to CSV ``path`` through a temporary file, so ``path`` is old or complete (the csv
    module's ``\r\n`` lines, as manifests have always been written)."""
    write_rows(path, rows, header, terminator=CRLF, atomic=True)
