"""Stimuli of a pairwise-comparison study (thesis §5.1.3) and each observer's trial plan.

Every option of a trial is a flicker between the reference and one model's output, shown at the
images' native resolution: the folder holds one PNG per reference and per output, and the
collection app alternates them in the browser. A study may show the images of several tasks with
the same losses, as the thesis's MRI study showed two knee and two brain images (4 images × 15
pairs = 60 comparisons per observer). ``manifest.json`` lists the images and the trials (every
image × every pair of losses); the order of the trials and which loss is on the left are drawn
per observer from the study seed, the study id and the observer id, so a reloaded session
continues with the same plan.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lossbench.core.seeding import derive_seed
from lossbench.data.valset import ImageFile, resolve_image_id
from lossbench.userstudy.viewing import conditions as viewing_conditions

MANIFEST = "manifest.json"


def _png(image: np.ndarray, path: Path) -> tuple[int, int]:
    """Write a (C, H, W) image in [0, 1] as an 8-bit PNG, clipped as a display would; returns (width, height)."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    picture = (
        Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return picture.size


@dataclass(frozen=True)
class Source:
    """The images one task contributes to a study."""

    task: str
    #: Validation set (``results/data/<task>/val.h5``); its ``target`` group holds the references.
    valset: str | Path
    #: Loss → its model's outputs (``results/outputs/<task>/<loss>/seed<N>.h5``).
    outputs: dict[str, str | Path]
    #: Validation images to show: ids, or indices as in :func:`lossbench.data.valset.resolve_image_id`.
    images: list[str | int]


def make_study_stimuli(
    study: str, sources: list[Source], folder: str | Path, flicker_ms: int = 500, viewing: dict | None = None
) -> Path:
    """Write the PNGs and ``manifest.json`` of a study of one or more tasks into ``folder``; returns the manifest's
    path.

    Args:
        study: Study id, recorded in the manifest; it seeds the observers' plans.
        sources: The tasks' images, all with the same losses.
        folder: Destination folder.
        flicker_ms: Duration of each half of a flicker.
        viewing: FLIP's viewing conditions (``evaluation.flip``), recorded in the manifest as those the
            stimuli should be shown under, at their native resolution
            (:func:`lossbench.userstudy.viewing.conditions`); the app tells observers how far to sit.
    """
    losses = list(sources[0].outputs) if sources else []
    if len(losses) < 2:
        raise ValueError(f"study {study}: needs at least 2 losses, got {', '.join(losses) or 'none'}")
    folder = Path(folder)
    entries = _write_images(study, sources, losses, folder)
    trials = [
        {"id": f"t{index:04d}", "image": image, "a": a, "b": b}
        for index, (image, (a, b)) in enumerate(itertools.product(entries, itertools.combinations(losses, 2)))
    ]
    manifest = {
        "study": study,
        "tasks": [source.task for source in sources],
        "conditions": losses,
        "flicker_ms": flicker_ms,
        "images": entries,
        "trials": trials,
    }
    if viewing is not None:
        manifest["viewing"] = viewing_conditions(viewing)
    path = folder / MANIFEST
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=1))
    os.replace(temporary, path)
    return path


def _write_images(study: str, sources: list[Source], losses: list[str], folder: Path) -> dict[str, dict]:
    """Write each source's references and outputs as PNGs under ``folder/images``; returns the manifest's ``images``
    (image id → task, reference, size and outputs), checking that every task has ``losses`` and each image one
    size."""
    entries: dict[str, dict] = {}
    for source in sources:
        if list(source.outputs) != losses:
            raise ValueError(
                f"study {study}: task {source.task} has the losses {', '.join(source.outputs)}, task {sources[0].task}"
                f" {', '.join(losses)}"
            )
        with ImageFile(source.valset) as references:
            images = [resolve_image_id(references.ids, image, source.valset) for image in source.images]
            for image in images:
                if image in entries:
                    raise ValueError(
                        f"study {study}: image id {image!r} appears twice (tasks {entries[image]['task']} and"
                        f" {source.task})"
                    )
                width, height = _png(references.read("target", image), folder / "images" / image / "reference.png")
                entries[image] = {
                    "task": source.task,
                    "reference": f"images/{image}/reference.png",
                    "width": width,
                    "height": height,
                    "outputs": {},
                }
        for loss, path in source.outputs.items():
            with ImageFile(path) as output:
                for image in images:
                    size = _png(output.read("output", image), folder / "images" / image / f"{loss}.png")
                    if size != (entries[image]["width"], entries[image]["height"]):
                        raise ValueError(
                            f"{path}: output {image!r} is {size[0]}×{size[1]}, the reference"
                            f" {entries[image]['width']}×{entries[image]['height']}"
                        )
                    entries[image]["outputs"][loss] = f"images/{image}/{loss}.png"
    return entries


def make_stimuli(
    task: str,
    valset: str | Path,
    outputs: dict[str, str | Path],
    images: list[str],
    folder: str | Path,
    flicker_ms: int = 500,
    viewing: dict | None = None,
) -> Path:
    """:func:`make_study_stimuli` of a study of one task, whose id is the task's name."""
    return make_study_stimuli(task, [Source(task, valset, outputs, images)], folder, flicker_ms, viewing)


@dataclass(frozen=True)
class PlannedTrial:
    """One trial as an observer sees it: which loss is on the left and which on the right."""

    id: str
    image: str
    left: str
    right: str


def load_manifest(path: str | Path) -> dict:
    """Read and check a manifest written by :func:`make_stimuli`."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable manifest ({error})") from error
    for key in ("study", "tasks", "conditions", "flicker_ms", "images", "trials"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest has no {key!r}")
    ids = [trial["id"] for trial in manifest["trials"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate trial ids")
    return manifest


def plan(manifest: dict, observer: str, seed: int) -> list[PlannedTrial]:
    """The trials of ``observer`` in their order, with sides; the same for the same (seed, observer)."""
    rng = np.random.default_rng(derive_seed(seed, manifest["study"], observer))
    trials = manifest["trials"]
    order = rng.permutation(len(trials))
    swap = rng.integers(0, 2, len(trials)).astype(bool)
    planned = []
    for index in order:
        trial = trials[index]
        left, right = (trial["b"], trial["a"]) if swap[index] else (trial["a"], trial["b"])
        planned.append(PlannedTrial(trial["id"], trial["image"], left, right))
    return planned
