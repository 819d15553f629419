"""Stimuli of a pairwise-comparison study (thesis §5.1.3) and each observer's trial plan.

Every option of a trial is a flicker between the reference and one model's output, shown at the
images' native resolution: the folder holds one PNG per reference and per output, and the
collection app alternates them in the browser. ``manifest.json`` lists the images and the trials
(every validation image × every pair of losses); the order of the trials and which loss is on the
left are drawn per observer from the study seed and the observer id, so a reloaded session
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

from lossbench.data.valset import ImageFile
from lossbench.seeding import derive_seed

MANIFEST = "manifest.json"


def _png(image: np.ndarray, path: Path) -> tuple[int, int]:
    """Write a (C, H, W) image in [0, 1] as an 8-bit PNG, clipped as a display would; returns (width, height)."""
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    picture = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    return picture.size


def make_stimuli(task: str, valset: str | Path, outputs: dict[str, str | Path], images: list[str], folder: str | Path, flicker_ms: int = 500, viewing: dict | None = None) -> Path:
    """Write the PNGs and ``manifest.json`` of a study into ``folder``; returns the manifest's path.

    Args:
        task: Task name, recorded in the manifest.
        valset: Validation set (``results/data/<task>/val.h5``); its ``target`` group holds the references.
        outputs: Loss → its model's outputs (``results/outputs/<task>/<loss>/seed<N>.h5``).
        images: Validation image ids to show.
        folder: Destination folder.
        flicker_ms: Duration of each half of a flicker.
        viewing: FLIP's viewing conditions (``evaluation.flip`` with its ppd), recorded in the
            manifest as those the stimuli should be shown under, at their native resolution.
    """
    if len(outputs) < 2:
        raise ValueError(f"a study needs at least 2 losses, got {', '.join(outputs) or 'none'}")
    folder = Path(folder)
    entries = {}
    with ImageFile(valset) as references:
        for image in images:
            if image not in references.ids:
                raise ValueError(f"{valset}: no validation image {image!r} (available: {', '.join(references.ids[:8])})")
            width, height = _png(references.read("target", image), folder / "images" / image / "reference.png")
            entries[image] = {"reference": f"images/{image}/reference.png", "width": width, "height": height, "outputs": {}}
    for loss, path in outputs.items():
        with ImageFile(path) as output:
            for image in images:
                size = _png(output.read("output", image), folder / "images" / image / f"{loss}.png")
                if size != (entries[image]["width"], entries[image]["height"]):
                    raise ValueError(f"{path}: output {image!r} is {size[0]}×{size[1]}, the reference {entries[image]['width']}×{entries[image]['height']}")
                entries[image]["outputs"][loss] = f"images/{image}/{loss}.png"
    trials = [{"id": f"t{index:04d}", "image": image, "a": a, "b": b} for index, (image, (a, b)) in enumerate(itertools.product(images, itertools.combinations(outputs, 2)))]
    manifest = {"task": task, "conditions": list(outputs), "flicker_ms": flicker_ms, "images": entries, "trials": trials}
    if viewing is not None:
        manifest["viewing"] = viewing
    path = folder / MANIFEST
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(manifest, indent=1))
    os.replace(temporary, path)
    return path


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
    for key in ("task", "conditions", "flicker_ms", "images", "trials"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest has no {key!r}")
    ids = [trial["id"] for trial in manifest["trials"]]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate trial ids")
    return manifest


def plan(manifest: dict, observer: str, seed: int) -> list[PlannedTrial]:
    """The trials of ``observer`` in their order, with sides; the same for the same (seed, observer)."""
    rng = np.random.default_rng(derive_seed(seed, manifest["task"], observer))
    trials = manifest["trials"]
    order = rng.permutation(len(trials))
    swap = rng.integers(0, 2, len(trials)).astype(bool)
    planned = []
    for index in order:
        trial = trials[index]
        left, right = (trial["b"], trial["a"]) if swap[index] else (trial["a"], trial["b"])
        planned.append(PlannedTrial(trial["id"], trial["image"], left, right))
    return planned
