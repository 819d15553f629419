"""Paper-shape rehearsal: config/paper.yaml's network, crops and batch sizes through the whole workflow.

tests/data/config_paper_shape.yaml on data of real sizes (ImageNet- and Kodak-sized photographs in
folders, ``realistic`` synthetic fastMRI files), one step per training job: all 18 trainings, inference,
evaluation and every table and figure must run to completion, and each training job logs its peak memory.
"""

import os
import re
import subprocess
import time

import pytest
import yaml
from PIL import Image, ImageOps

from lossbench.data.images import embedded_photo_path

from conftest import REPO, snakemake_command

CONFIG = REPO / "tests" / "data" / "config_paper_shape.yaml"
#: ImageNet's typical training image (500×375) and Kodak's (768×512).
TRAIN_SIZE, VAL_SIZE = (500, 375), (768, 512)
VAL_PHOTOS = ("astronaut", "coffee", "grace_hopper")
TRAIN_PHOTOS = ("chelsea", "rocket", "motorcycle", "hubble", "immunohistochemistry", "retina")


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    with Image.open(embedded_photo_path(name)) as image:
        return ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)


def write_photos(root):
    """16 ImageNet-sized JPEG training photos (each bundled photograph, mirrored and flipped) and 3 Kodak-sized PNGs."""
    (root / "photos" / "train").mkdir(parents=True)
    (root / "photos" / "val").mkdir(parents=True)
    variants = [
        (name, transform) for transform in (lambda im: im, ImageOps.mirror, ImageOps.flip) for name in TRAIN_PHOTOS
    ][:16]
    for index, (name, transform) in enumerate(variants):
        transform(_photo(name, TRAIN_SIZE)).save(root / "photos" / "train" / f"train_{index:02d}.jpg", quality=90)
    for index, name in enumerate(VAL_PHOTOS):
        _photo(name, VAL_SIZE).save(root / "photos" / "val" / f"photo_{index}.png")


@pytest.mark.slow
def test_paper_shape_runs_every_job_to_completion(tmp_path):
    write_photos(tmp_path)
    command = snakemake_command(str(CONFIG), str(tmp_path), cores=2)
    started = time.perf_counter()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    config = yaml.safe_load(CONFIG.read_text())
    results = tmp_path / "results" / config["experiment"]
    peaks = {}
    for task in config["tasks"]:
        for loss in config["losses"]:
            assert (results / "models" / task / loss / "seed0" / "model.pt").is_file()
            assert (results / "metrics" / task / loss / "seed0.csv").is_file()
            log = (results / "logs" / "train" / task / loss / "seed0.log").read_text()
            match = re.search(r"peak memory of \S+ seed 0: host ([\d.]+) GiB", log)
            assert match, f"{task}/{loss}: no peak memory line in its training log"
            peaks[f"{task}/{loss}"] = float(match.group(1))
    assert len(peaks) == 18
    for table in ("table_6_1", "table_6_3", "table_6_4"):
        assert all((results / "tables" / f"{table}.{ext}").stat().st_size > 0 for ext in ("csv", "md", "tex"))
    assert all((results / "figures" / f"{name}.png").stat().st_size > 0 for name in config["figures"])
    # Shown with -s: what a thesis-scale job needs per step on the host, and how long the rehearsal took.
    print(
        f"paper-shape rehearsal: {time.perf_counter() - started:.0f} s; peak host memory per training job (GiB):"
        f" {peaks}"
    )
