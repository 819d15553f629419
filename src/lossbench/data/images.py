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


#: PIL modes of 8 bits per channel, which PIL converts to RGB or luminance (÷ 255).
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
#: PIL modes of one channel deeper than 8 bits, and the value that maps to 1.0 (None: float, kept as is).
_DEEP_GRAY_MODES: dict[str, float | None] = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "F": None}


def _open(path: str | Path) -> Image.Image:
    """Open ``path`` lazily (header only), every failure as one ``ValueError`` line naming the file."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refused as a possible decompression bomb ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read as an image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def _check_mode(path: str | Path, mode: str) -> None:
    if mode not in _EIGHT_BIT_MODES and mode not in _DEEP_GRAY_MODES:
        raise ValueError(f"{path}: image mode {mode} has no defined value range; expected 8-bit, 16-bit grayscale or float grayscale")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image file ``path`` from its header, without decoding the pixels.

    Raises:
        ValueError: one line naming the file when it is no readable image, has a mode that
            :func:`read_image` cannot map to [0, 1], or exceeds PIL's decompression-bomb limit
            (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    with _open(path) as image:
        _check_mode(path, image.mode)
        return image.size


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Read an image file at its real bit depth as float32 in [0, 1].

    8-bit images are divided by 255 (palette, alpha and other colour modes converted by PIL);
    16-bit grayscale by 65535; 32-bit float grayscale is taken as it is and must lie in [0, 1].

    Args:
        path: Image file.
        gray: Return luminance (ITU-R 601, PIL's ``L``), shape (H, W), instead of RGB, shape
            (H, W, 3); grayscale images are repeated into three channels for RGB.

    Raises:
        ValueError: one line naming the file: unreadable, a decompression bomb, a mode that has
            no defined range (e.g. 32-bit integer), or float values outside [0, 1].
    """
    with _open(path) as image:
        mode = image.mode
        _check_mode(path, mode)
        try:
            if mode in _DEEP_GRAY_MODES:
                array = np.array(image, dtype=np.float32)
            else:
                array = np.array(image.convert("L" if gray else "RGB"), dtype=np.float32)
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(f"{path}: cannot decode mode {mode} image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    full_scale = _DEEP_GRAY_MODES.get(mode, 255.0)
    if full_scale is not None:
        array /= full_scale
    elif not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(f"{path}: float image has values in [{np.nanmin(array):.4g}, {np.nanmax(array):.4g}]{' and non-finite ones' if not np.isfinite(array).all() else ''}, expected finite values in [0, 1]")
    if mode in _DEEP_GRAY_MODES and not gray:
        array = np.repeat(array[..., None], 3, axis=-1)
    return array


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as float32 RGB, shape (H, W, 3), values in [0, 1], at its real bit depth.

    Grayscale images are repeated into three channels and alpha is dropped (see :func:`read_image`).
    """
    return read_image(path)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) after :func:`resize_max_side`: unchanged, or downscaled to a longer side of ``max_side``."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (H, W, 3) ``image`` with antialiasing so that its longer side is at most ``max_side``."""
    size = scaled_size(image.shape[1], image.shape[0], max_side)
    if size == (image.shape[1], image.shape[0]):
        return image
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
