"""The Kodak Lossless True Color Image Suite: the thesis's denoising validation set (§4.1).

24 PNG photographs ``kodim01.png`` … ``kodim24.png`` of 768×512 or 512×768 pixels, fetched from the
site the thesis cites (http://r0k.us/graphics/kodak/) or taken from a folder the user filled by hand,
and verified against the SHA-256 digests shipped in ``kodak.sha256``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from PIL import Image

from lossbench.data.download import DownloadError, check_digest, download

log = logging.getLogger(__name__)

KODAK_NAMES = tuple(f"kodim{index:02d}.png" for index in range(1, 25))
#: The images' folder on the site the thesis cites.
DEFAULT_URL = "http://r0k.us/graphics/kodak/kodak/"
CHECKSUM_FILE = Path(__file__).with_name("kodak.sha256")
#: The image sizes (width, height) of the suite: landscape or portrait.
SIZES = {(768, 512), (512, 768)}


def read_checksums(path: str | Path = CHECKSUM_FILE) -> dict[str, str | None]:
    """File name → SHA-256 from a ``sha256sum``-format file; ``None`` for an ``unknown`` entry.

    Raises:
        ValueError: A line is not ``<digest>  <name>`` or a Kodak image has no entry.
    """
    checksums: dict[str, str | None] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}:{number}: expected '<sha256>  <file name>', got {line!r}")
        digest, name = parts
        checksums[name.lstrip("*")] = None if digest == "unknown" else digest.lower()
    missing = [name for name in KODAK_NAMES if name not in checksums]
    if missing:
        raise ValueError(f"{path}: no checksum entry for {', '.join(missing)}")
    return checksums


def check_kodak_png(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` decodes as an RGB PNG of a Kodak image size."""
    try:
        with Image.open(path) as image:
            image.load()
            kind, mode, size = image.format, image.mode, image.size
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"not a decodable image ({error})") from None
    if kind != "PNG" or mode != "RGB" or size not in SIZES:
        raise ValueError(f"expected a 768×512 or 512×768 RGB PNG, got {kind} {mode} {size[0]}×{size[1]}")


def fetch_kodak(
    out_dir: str | Path,
    url_base: str = DEFAULT_URL,
    local_dir: str | Path | None = None,
    checksums: dict[str, str | None] | None = None,
    **download_options,
) -> list[Path]:
    """Put the 24 verified Kodak images into ``out_dir``: copied from ``local_dir`` or downloaded.

    An image found in ``local_dir`` (a folder the user filled by hand) is verified and copied; the
    others are downloaded from ``url_base`` + name. Each is checked against its SHA-256 (when the
    checksum file knows it) and for being a decodable PNG of a Kodak size, then written atomically.

    Args:
        out_dir: Destination folder (created).
        url_base: URL of the folder holding ``kodimNN.png``; a missing trailing ``/`` is added.
        local_dir: Folder with some or all of the images, or None.
        checksums: Name → digest (None: size and decoding only); default :func:`read_checksums`.
        **download_options: Passed to :func:`lossbench.data.download.download` (retries, timeout, ...).

    Returns:
        The 24 image paths in ``out_dir``, in order.

    Raises:
        DownloadError: An image is unreachable, corrupt or has the wrong checksum.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checksums = read_checksums() if checksums is None else checksums
    url_base = url_base if url_base.endswith("/") else url_base + "/"
    by_hand = local_dir if local_dir is not None else "a folder"
    hint = (
        "without network access, download kodim01.png … kodim24.png from http://r0k.us/graphics/kodak/ "
        f"elsewhere, put them into {by_hand} and set tasks.denoise.data.val_dir to that folder"
    )
    paths = []
    for name in KODAK_NAMES:
        dest = out_dir / name
        local = Path(local_dir) / name if local_dir is not None else None
        if local is not None and local.is_file():
            _copy_verified(local, dest, checksums[name])
        else:
            download(
                url_base + name, dest, checksums[name], manual_hint=hint, validate=check_kodak_png, **download_options
            )
        paths.append(dest)
    log.info("%d Kodak images verified in %s", len(paths), out_dir)
    return paths


def _copy_verified(source: Path, dest: Path, sha256: str | None) -> None:
    check_digest(source, sha256)
    try:
        check_kodak_png(source)
    except ValueError as error:
        raise DownloadError(f"{source}: {error}") from None
    temporary = dest.with_name(dest.name + ".part")
    shutil.copyfile(source, temporary)
    os.replace(temporary, dest)
