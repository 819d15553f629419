"""Validation sets and model outputs as HDF5 files of named images.

Layout: one dataset per image under a group (``input``, ``target`` or ``output``), each
(C, H, W) float32, named by the image id; the ids in order in the root attribute ``ids``.
Images may differ in size (Kodak has portrait and landscape photos).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np


def write_images(
    path: str | Path, groups: dict[str, Iterable[tuple[str, np.ndarray]]] | None = None, attrs: dict | None = None
) -> None:
    """Write groups of named (C, H, W) images to ``path`` atomically (temp file, then rename).

    Args:
        path: Destination ``.h5`` file.
        groups: Group name → iterable of (image id, array); every group must give the same ids.
        attrs: Extra root attributes (strings or numbers).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    ids: list[str] | None = None
    with h5py.File(temporary, "w") as file:
        for group_name, items in (groups or {}).items():
            group = file.create_group(group_name)
            group_ids = []
            for image_id, array in items:
                array = np.asarray(array, dtype=np.float32)
                if array.ndim != 3:
                    raise ValueError(f"{path}: image {image_id!r} must be (C, H, W), got shape {array.shape}")
                group.create_dataset(image_id, data=array)
                group_ids.append(image_id)
            if ids is not None and group_ids != ids:
                raise ValueError(f"{path}: group {group_name!r} holds other ids than the first group")
            ids = group_ids
        file.attrs["ids"] = np.array(ids or [], dtype=h5py.string_dtype())
        for key, value in (attrs or {}).items():
            file.attrs[key] = value
    os.replace(temporary, path)


class ImageFile:
    """Read access to a file written by :func:`write_images`.

    Example:
        >>> with ImageFile("results/data/denoise/val.h5") as val:  # doctest: +SKIP
        ...     noisy = val.read("input", val.ids[0])
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: image file does not exist")
        self._file = h5py.File(self.path, "r")
        self.ids: list[str] = [i.decode() if isinstance(i, bytes) else str(i) for i in self._file.attrs["ids"]]
        self.attrs = {key: value for key, value in self._file.attrs.items() if key != "ids"}

    def read(self, group: str, image_id: str) -> np.ndarray:
        """The (C, H, W) float32 image ``image_id`` of ``group``."""
        if group not in self._file:
            raise KeyError(f"{self.path}: no group {group!r} (has {', '.join(self._file)})")
        if image_id not in self._file[group]:
            raise KeyError(f"{self.path}: no image {image_id!r} in group {group!r}")
        return self._file[group][image_id][()]

    def items(self, group: str) -> Iterator[tuple[str, np.ndarray]]:
        """(id, image) pairs of ``group`` in id order."""
        for image_id in self.ids:
            yield image_id, self.read(group, image_id)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ImageFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_image_id(ids: list[str], image: str | int, source: str | Path) -> str:
    """The validation image id that a figure's ``image`` names.

    Args:
        ids: Validation image ids, MRI ones as ``<file stem>_s<slice>``.
        image: An id, or an index N for data whose file names are not known when the configuration
            is written (the real fastMRI and Kodak sets): the N-th volume's middle slice for MRI,
            the N-th image for photographs, in sorted order.
        source: The validation set's path, for messages.

    Raises:
        ValueError: naming ``source`` when no such image exists.
    """
    if isinstance(image, int):
        groups: dict[str, list[str]] = {}
        for image_id in sorted(ids):
            stem, separator, slice_number = image_id.rpartition("_s")
            groups.setdefault(stem if separator and slice_number.isdigit() else image_id, []).append(image_id)
        if image >= len(groups):
            raise ValueError(
                f"{source}: figure image index {image} is out of range: the validation set has {len(groups)} volumes or"
                " images"
            )
        members = list(groups.values())[image]
        return members[len(members) // 2]
    if image not in ids:
        shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
        raise ValueError(f"{source}: no validation image {image!r} (available: {shown})")
    return image
