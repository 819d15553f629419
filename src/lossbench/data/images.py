"""RGB photographs: the ones bundled with scikit-image and matplotlib, and folders of image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Photographs shipped inside scikit-image and matplotlib, usable offline.
EMBEDDED_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"),
    "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "hubble": ("skimage", "hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "ihc.png"),
    "retina": ("skimage", "retina.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def embedded_photo_path(name: str) -> Path:
    """Path of the bundled photograph ``name`` (one of :data:`EMBEDDED_PHOTOS`)."""
    if name not in EMBEDDED_PHOTOS:
        raise ValueError(f"unknown embedded photo {name!r}: expected one of {', '.join(EMBEDDED_PHOTOS)}")
    package, filename = EMBEDDED_PHOTOS[name]
    if package == "skimage":
        import skimage.data

        path = Path(skimage.data.__file__).parent / filename
    else:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / filename
    if not path.is_file():
        raise FileNotFoundError(f"embedded photo {name!r}: {path} is missing from the installed {package}")
    return path


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as float32 RGB, shape (H, W, 3), values in [0, 1].

    Grayscale images are repeated into three channels and alpha is dropped.
    """
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read as an image ({error})") from error
    return np.asarray(rgb, dtype=np.float32) / 255.0


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (H, W, 3) ``image`` with antialiasing so that its longer side is at most ``max_side``."""
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    scale = max_side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    pil = Image.fromarray(np.round(image * 255).astype(np.uint8))
    return np.asarray(pil.resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write (H, W, 3) float ``image`` in [0, 1] as an 8-bit PNG."""
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files below ``folder`` (recursively), keyed by a stable id: the relative path without suffix.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no image files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return {p.relative_to(root).with_suffix("").as_posix().replace("/", "__"): p for p in files}
