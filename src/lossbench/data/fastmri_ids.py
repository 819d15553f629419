"""Ids of fastMRI slices: ``<file stem>_s<NNN>``, and the volume a slice id belongs to.

Every per-image file of an MRI task (validation sets, outputs, metric CSVs) names its slices this
way; the statistics group them by volume, and the fastMRI submission files stack them per volume.
"""

from __future__ import annotations

import re

_SLICE_SUFFIX = re.compile(r"_s\d{3,}$")


def slice_id(stem: str, slice_num: int) -> str:
    """The id of slice ``slice_num`` of the volume file ``stem`` (``file1000001_s017``)."""
    return f"{stem}_s{slice_num:03d}"


def volume_of(image_id: str) -> str:
    """The volume of a slice id (``file1000001_s017`` → ``file1000001``); any other id is its own volume."""
    return _SLICE_SUFFIX.sub("", image_id)
