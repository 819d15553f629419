"""RGB photographs: the ones bundled with scikit-image and matplotlib, and folders of image files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

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
        # Deferred: scikit-image is imported only where its sample photographs are read.
        import skimage.data

        path = Path(skimage.data.__file__).parent / filename
    else:
        # Deferred: matplotlib is imported only where its sample photograph is read.
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / filename
    if not path.is_file():
        raise FileNotFoundError(f"embedded photo {name!r}: {path} is missing from the installed {package}")
    return path


#: PIL modes of 8 bits per channel, which PIL converts to RGB or luminance (÷ 255).
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
#: PIL modes of one channel deeper than 8 bits, and the value that maps to 1.0 (None: float, kept as is).
_DEEP_GRAY_MODES: dict[str, float | None] = {
    "I;16": 65535.0,
    "I;16L": 65535.0,
    "I;16B": 65535.0,
    "I;16N": 65535.0,
    "F": None,
}
#: Raw modes of 16-bit colour PNGs (PIL keeps each big-endian sample's high byte) → a raw mode of the
#: same bits per pixel that keeps the low bytes instead: little-endian samples, or all bytes for grey + alpha.
_PNG16_LOW_BYTES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}
#: ITU-R 601 luminance weights of R, G and B (those of PIL's ``L``), for colour deeper than 8 bits.
_LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class DuplicateImageIdError(ValueError):
    """Two files of a folder that :func:`list_images` would key by one id; the message is one line naming both."""

    def __init__(self, first: Path, second: Path, image_id: str):
        super().__init__(
            f"{first} and {second} have the same id {image_id!r} (relative path without suffix, '/' as '__');"
            " rename one"
        )
        self.first, self.second, self.image_id = first, second, image_id


def _open(path: str | Path) -> Image.Image:
    """Open ``path`` lazily (header only), every failure as one ``ValueError`` line naming the file."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{path}: refused as a possible decompression bomb ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(
            f"{path}: cannot read as an image ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from None


def _check_mode(path: str | Path, mode: str) -> None:
    if mode not in _EIGHT_BIT_MODES and mode not in _DEEP_GRAY_MODES:
        raise ValueError(
            f"{path}: image mode {mode} has no defined value range; expected 8-bit, 16-bit grayscale or float grayscale"
        )


def _deep_colour(image: Image.Image) -> bool:
    """Whether PIL would read colour ``image`` at 8 bits though its samples are deeper (PIL has no 16-bit colour
    mode)."""
    if image.format == "TIFF":  # the header's bits per sample: PIL's raw modes of planar 16-bit TIFFs name no depth
        bits = image.tag_v2.get(258, 1)
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    for tile in image.tile:
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        if args and isinstance(args[0], str) and ";16" in args[0]:  # PNG, SGI, ...: PIL keeps each sample's high byte
            return True
        if tile.codec_name in ("ppm", "ppm_plain") and args[-1] > 255:  # maxval > 255: PIL rescales to 8 bits
            return True
    return False


def _png16(path: str | Path, rawmode: str) -> np.ndarray:
    """Samples (H, W, 3) uint16 of a 16-bit colour PNG of PIL raw mode ``rawmode``, alpha dropped, grey repeated.

    PIL decodes (inflates and unfilters) the pixel data, then unpacks each 16-bit sample to its high
    byte. A second decode with a raw mode of the same bits per pixel, so that PNG's filters work on
    the same bytes, unpacks the low bytes instead: together the full samples, from PIL's own decoder.
    """

    def decode(rawmode: str | None = None) -> np.ndarray:
        with Image.open(path) as image:
            if rawmode is not None:
                image.tile = [tile._replace(args=rawmode) for tile in image.tile]
            return np.array(image, dtype=np.uint16)

    if rawmode == "LA;16B":  # one decode as 8-bit RGBA gives the four bytes: grey high, grey low, alpha high, alpha low
        data = decode(_PNG16_LOW_BYTES[rawmode])
        return np.repeat(data[..., :1] * 256 + data[..., 1:2], 3, axis=-1)
    return (decode() * 256 + decode(_PNG16_LOW_BYTES[rawmode]))[..., :3]


def _tiff16(path: str | Path) -> np.ndarray:
    """Samples (H, W, 3) uint16 of the first page of a 16-bit colour TIFF, extra samples (alpha) dropped."""
    # Deferred: tifffile (a dependency of scikit-image) only for TIFF files.
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        samples = page.asarray()
        if page.axes.startswith("S"):  # planar configuration: one plane per sample
            samples = np.moveaxis(samples, 0, -1)
    if samples.dtype != np.uint16 or samples.ndim != 3 or samples.shape[-1] < 3:
        raise ValueError(f"samples of {samples.dtype}, shape {samples.shape}; expected 16-bit RGB")
    return samples[..., :3]


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
    16-bit colour (RGB, RGBA or grey + alpha), which PIL unpacks to 8 bits, is read at 16 bits from
    PNG and TIFF files (alpha dropped; luminance in float from ITU-R 601 weights) and refused in any
    other format.

    Args:
        path: Image file.
        gray: Return luminance (ITU-R 601, PIL's ``L``), shape (H, W), instead of RGB, shape
            (H, W, 3); grayscale images are repeated into three channels for RGB.

    Raises:
        ValueError: one line naming the file: unreadable, a decompression bomb, a mode that has
            no defined range (e.g. 32-bit integer), float values outside [0, 1], or 16-bit colour
            neither PNG nor TIFF.
    """
    with _open(path) as image:
        mode = image.mode
        _check_mode(path, mode)
        deep_colour = mode not in _DEEP_GRAY_MODES and _deep_colour(image)
        if (
            deep_colour
            and image.format != "TIFF"
            and not (image.format == "PNG" and image.tile[0].args in _PNG16_LOW_BYTES)
        ):
            raise ValueError(
                f"{path}: a {image.format} colour image of more than 8 bits per sample, which is read at its depth only"
                " from PNG or TIFF; save it as one of them"
            )
        try:
            if deep_colour:
                samples = _png16(path, image.tile[0].args) if image.format == "PNG" else _tiff16(path)
                rgb = samples.astype(np.float32) / np.float32(65535.0)
                return rgb @ _LUMINANCE if gray else rgb
            if mode in _DEEP_GRAY_MODES:
                array = np.array(image, dtype=np.float32)
            else:
                array = np.array(image.convert("L" if gray else "RGB"), dtype=np.float32)
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(
                f"{path}: cannot decode mode {mode} image"
                f" ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            ) from None
    full_scale = _DEEP_GRAY_MODES.get(mode, 255.0)
    if full_scale is not None:
        array /= full_scale
    elif not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        raise ValueError(
            f"{path}: float image has values in [{np.nanmin(array):.4g},"
            f" {np.nanmax(array):.4g}]{' and non-finite ones' if not np.isfinite(array).all() else ''}, expected finite"
            " values in [0, 1]"
        )
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


def write_png(path: str | Path | BinaryIO, image: np.ndarray, text: Mapping[str, str] | None = None) -> None:
    """Write (H, W, 3) float ``image`` in [0, 1] as an 8-bit PNG (to a file or a binary stream), with ``text`` as its
    text chunks."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path, format="PNG", pnginfo=info)


def png_text(path: str | Path) -> dict[str, str]:
    """The text chunks of the PNG file ``path``, decoding it to the end (so a damaged file raises).

    Raises:
        ValueError: one line naming the file when it is no readable PNG.
    """
    with _open(path) as image:
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as error:
            raise ValueError(
                f"{path}: cannot decode ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
            ) from None
        return dict(getattr(image, "text", {}))


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files below ``folder`` (recursively), keyed by a stable id: the relative path without suffix.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no image files.
        DuplicateImageIdError: two files have one id (``a.png`` and ``a.jpg``, ``sub/x.png`` and
            ``sub__x.png``), where one of them would otherwise be dropped.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    images: dict[str, Path] = {}
    for path in files:
        image_id = path.relative_to(root).with_suffix("").as_posix().replace("/", "__")
        if image_id in images:
            raise DuplicateImageIdError(images[image_id], path, image_id)
        images[image_id] = path
    return images
