"""Real fastMRI data: per-file validation, the checked file folders training reads, and download.

* :func:`check_volume` validates one ``.h5`` volume (HDF5 readable and complete, datasets, shapes,
  dtypes, ISMRMRD header, attributes) and raises one line naming the file and what is wrong.
* :func:`link_checked` checks every volume of a folder and, only when all pass, replaces the output
  folder by symbolic links to them (optionally a seeded subset: the thesis validated brain models on
  a subset of the official brain *train* set, §4.2), so a failing check leaves earlier outputs alone.
  With ``skip_bad`` (config ``tasks.<knee|brain>.data.skip_bad``) unusable volumes are instead left
  out, each listed in one warning line of the log, and the rest is linked.

Every genuine fastMRI layout passes: coil counts varying between volumes, k-space of any width (knee
368, 372, ...; brain scans narrower than the crop are cropped to W × W, see :func:`crop_side`),
single-coil files that also carry ``reconstruction_rss``, any ``acquisition``, any positive ``max``.
* :func:`download_url_list` fetches the archives of the URL list fastMRI e-mails on registration,
  resumably and with SHA-256 checks where the list gives digests, and extracts them.

Command line: ``python -m lossbench.data.fastmri_files {check,download} --help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlparse

import h5py
import numpy as np

from lossbench.core.seeding import derive_seed
from lossbench.data.download import DownloadError, download, extract_tar
from lossbench.data.fastmri_synthetic import ISMRMRD_NAMESPACE, RECON_KEYS

log = logging.getLogger(__name__)

KSPACE_NDIM = {"singlecoil": 3, "multicoil": 4}  # (S, H, W) or (S, C, H, W)

#: Header fields ``fastmri.data.SliceDataset`` reads to find the k-space padding and image size.
HEADER_FIELDS = (
    "encoding/encodedSpace/matrixSize/x",
    "encoding/encodedSpace/matrixSize/y",
    "encoding/reconSpace/matrixSize/x",
    "encoding/reconSpace/matrixSize/y",
    "encoding/encodingLimits/kspace_encoding_step_1/center",
    "encoding/encodingLimits/kspace_encoding_step_1/maximum",
)


class FastMRIFileError(ValueError):
    """A fastMRI volume is unusable; the message is one line naming the file and the problem."""


def check_volume(
    path: str | Path, challenge: str, crop: int = 320, read_data: bool = True, full: bool = False
) -> tuple[int, ...]:
    """Validate one fastMRI volume and return its k-space shape.

    Args:
        path: The ``.h5`` file.
        challenge: ``singlecoil`` or ``multicoil``.
        crop: Side of the centre crop the task uses; the images must be at least this large, except
            that k-space narrower than the crop is cropped to its width W (:func:`crop_side`), so its
            target and k-space rows must hold W × W.
        read_data: Also read the last slice, which catches a file cut short inside its data.
        full: Read every slice of k-space and target: catches damaged (e.g. compressed) chunks
            anywhere, and NaN or infinite values, one of which spoils a whole slice (slower).

    Raises:
        FastMRIFileError: The file is truncated or not HDF5, lacks ``kspace``, the target or the
            header (or stores one as a group), has wrong shapes or dtypes, an unparsable header or
            a non-positive matrix size, no positive scalar ``max``, unreadable or non-finite data.
        ValueError: ``crop`` is not a positive integer.
    """
    path = Path(path)
    recon_key = RECON_KEYS[challenge]
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 1:
        raise ValueError(f"crop {crop!r} must be a positive integer")

    def fail(problem: str) -> FastMRIFileError:
        return FastMRIFileError(f"{path}: {problem}")

    try:
        file = h5py.File(path, "r")
    except OSError as error:
        # HDF5 compares the stored end-of-file address with the file size, so a cut-off download
        # fails here with "truncated file".
        raise fail(f"not a readable HDF5 file, truncated or corrupt ({_first_line(error)})") from None
    with file:
        for key in ("kspace", recon_key, "ismrmrd_header"):
            if key not in file:
                raise fail(
                    f"missing dataset {key!r}, expected a fastMRI {challenge} volume with kspace, {recon_key} and"
                    " ismrmrd_header"
                )
            if not isinstance(file[key], h5py.Dataset):
                raise fail(f"{key} is an HDF5 {type(file[key]).__name__.lower()}, expected a dataset")
        kspace, target = file["kspace"], file[recon_key]
        if kspace.ndim != KSPACE_NDIM[challenge]:
            raise fail(f"kspace has shape {kspace.shape}, expected {KSPACE_NDIM[challenge]} dimensions for {challenge}")
        if not np.issubdtype(kspace.dtype, np.complexfloating):
            raise fail(f"kspace has dtype {kspace.dtype}, expected complex64")
        if target.ndim != 3 or not np.issubdtype(target.dtype, np.floating):
            raise fail(
                f"{recon_key} has shape {target.shape} and dtype {target.dtype}, expected (slices, height, width)"
                " float32"
            )
        if target.shape[0] != kspace.shape[0] or kspace.shape[0] == 0:
            raise fail(f"kspace has {kspace.shape[0]} slices but {recon_key} has {target.shape[0]}")
        side = crop_side(kspace.shape, crop)
        if side > min(target.shape[-2:]) or side > kspace.shape[-2]:
            narrow = f", cropped to {side}×{side} as its k-space is narrower" if side < crop else ""
            raise fail(
                f"crop {crop} is larger than the image (kspace {kspace.shape[-2]}×{kspace.shape[-1]}, {recon_key}"
                f" {target.shape[-2]}×{target.shape[-1]}{narrow})"
            )
        _check_header(file["ismrmrd_header"][()], fail)
        _check_max(file.attrs.get("max"), fail)
        if full:
            for index in range(kspace.shape[0]):
                _check_slice(kspace, index, fail)
                _check_slice(target, index, fail)
        elif read_data:
            # The last slice lies at the end of the data: reading it catches a file cut short.
            _read_slice(kspace, -1, fail)
            _read_slice(target, -1, fail)
        return tuple(kspace.shape)


def crop_side(kspace_shape: tuple[int, ...], crop: int) -> int:
    """Side of the square crop of a volume with k-space ``kspace_shape`` (..., H, W): ``crop``, or W
    when the k-space is narrower, as fastMRI's ``UnetDataTransform`` crops such brain scans (its
    "FLAIR 203" case) to W × W."""
    return min(crop, kspace_shape[-1])


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _read_slice(dataset: h5py.Dataset, index: int, fail) -> np.ndarray:
    try:
        return dataset[index]
    except (OSError, ValueError, RuntimeError) as error:
        # A damaged compressed chunk fails in its decompression filter ("can't read data").
        raise fail(
            f"{dataset.name.lstrip('/')} slice {index % dataset.shape[0]} cannot be read, damaged data"
            f" ({_first_line(error)})"
        ) from None


def _check_slice(dataset: h5py.Dataset, index: int, fail) -> None:
    values = _read_slice(dataset, index, fail)
    finite = np.isfinite(values)
    if not finite.all():
        kinds = sorted({"NaN" if np.isnan(value) else "inf" for value in np.ravel(values[~finite])[:1000]})
        raise fail(
            f"{dataset.name.lstrip('/')} slice {index} holds {np.count_nonzero(~finite)} non-finite values"
            f" ({', '.join(kinds)})"
        )


def _check_max(maximum, fail) -> None:
    """The ``max`` attribute must be one positive finite real number (it scales targets to [0, 1])."""
    if maximum is None:
        raise fail("attribute 'max' is missing, expected the positive volume maximum used to scale to [0, 1]")
    value = np.asarray(maximum)
    if value.ndim != 0 or value.dtype.kind not in "iuf":
        shown = f"a {value.dtype} array of shape {value.shape}" if value.ndim else f"{maximum!r} of type {value.dtype}"
        raise fail(
            f"attribute 'max' is {shown}, expected one positive number (the volume maximum used to scale to [0, 1])"
        )
    if not np.isfinite(value) or value <= 0:
        raise fail(f"attribute 'max' is {value.item()}, expected the positive volume maximum used to scale to [0, 1]")


def _check_header(raw: bytes, fail) -> None:
    try:
        root = ElementTree.fromstring(raw.tobytes() if hasattr(raw, "tobytes") else raw)
    except (ElementTree.ParseError, TypeError) as error:
        raise fail(f"ismrmrd_header is not valid XML ({error})") from None
    namespace = {"m": ISMRMRD_NAMESPACE}
    for field in HEADER_FIELDS:
        node = root.find("/".join(f"m:{part}" for part in field.split("/")), namespace)
        if node is None or node.text is None:
            raise fail(f"ismrmrd_header lacks {field}, expected an ISMRMRD header in namespace {ISMRMRD_NAMESPACE}")
        try:
            value = int(node.text)
        except ValueError:
            raise fail(f"ismrmrd_header field {field} is {node.text!r}, expected an integer") from None
        # fastMRI derives the k-space padding and the image size from these: sizes must be positive.
        smallest = 1 if "matrixSize" in field else 0
        if value < smallest:
            raise fail(f"ismrmrd_header field {field} is {value}, expected an integer of at least {smallest}")


def check_folder(
    source: str | Path,
    challenge: str,
    crop: int = 320,
    full: bool = False,
    subset: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> tuple[list[Path], list[str]]:
    """Check the (selected) ``.h5`` volumes of ``source`` to the end, without stopping at the first bad one.

    Args:
        source: Folder of fastMRI ``.h5`` files (other entries are ignored).
        challenge: ``singlecoil`` or ``multicoil``.
        crop: Side of the centre crop the task uses.
        full: Read every slice of every volume (see :func:`check_volume`).
        subset: Check only the seeded subset :func:`select_volumes` draws; None checks all.
        seed: Seed of the subset.
        skip_bad: Leave unusable volumes out of the returned ones, each logged as a warning, and
            return no problems, unless none is usable.

    Returns:
        The selected (usable, with ``skip_bad``) volumes in sorted order, and one line per
        unusable volume naming it.

    Raises:
        FileNotFoundError: ``source`` is missing or holds no ``.h5`` files.
    """
    source = Path(source)
    selected = select_volumes(volume_files(source, challenge), subset, seed)
    usable, problems = [], []
    for path in selected:
        try:
            check_volume(path, challenge, crop, full=full)
            usable.append(path)
        except FastMRIFileError as error:
            problems.append(str(error))
    if skip_bad and usable:
        _log_skipped(problems, len(selected))
        return usable, []
    return selected, problems


def _log_skipped(problems: list[str], selected: int) -> None:
    for problem in problems:
        log.warning("skipped (skip_bad): %s", problem)
    if problems:
        log.warning("%d of %d selected volumes skipped as unusable (skip_bad)", len(problems), selected)


def volume_files(source: Path, challenge: str) -> list[Path]:
    """The ``.h5`` files of the fastMRI folder ``source``.

    Raises:
        FileNotFoundError: ``source`` is missing or holds no ``.h5`` files.
    """
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: fastMRI folder does not exist")
    files = [path for path in source.iterdir() if path.suffix == ".h5" and path.is_file()]
    if not files:
        raise FileNotFoundError(f"{source}: no .h5 files, expected fastMRI {challenge} volumes")
    return files


def select_volumes(files: list[Path], subset: int | None, seed: int) -> list[Path]:
    """All ``files`` (sorted), or a seeded subset of ``subset`` of them in sorted order."""
    files = sorted(files)
    if subset is None or subset >= len(files):
        return files
    chosen = np.random.default_rng(derive_seed(seed, "fastmri-subset")).choice(len(files), size=subset, replace=False)
    return [files[index] for index in sorted(chosen)]


def link_checked(
    source: str | Path,
    out_dir: str | Path,
    challenge: str,
    crop: int = 320,
    subset: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> list[Path]:
    """Check the volumes of ``source`` and make ``out_dir`` a folder of links to the selected ones.

    Every selected volume is checked before anything is written; the links are built in a sibling
    temporary folder that then replaces ``out_dir``, so a failing check leaves ``out_dir`` as it was.

    Args:
        source: Folder of fastMRI ``.h5`` files (other entries are ignored).
        out_dir: Folder of symbolic links to the selected volumes.
        challenge: ``singlecoil`` or ``multicoil``.
        crop: Side of the centre crop the task uses.
        subset: Number of volumes to draw with ``seed``; None keeps all.
        seed: Seed of the subset.
        skip_bad: Link only the usable selected volumes, logging each unusable one as a warning.

    Returns:
        The linked volumes in ``source``.

    Raises:
        FileNotFoundError: ``source`` is missing or holds no ``.h5`` files.
        FastMRIFileError: A selected volume fails :func:`check_volume` (with ``skip_bad``: all do).
    """
    source, out_dir = Path(source), Path(out_dir)
    files = volume_files(source, challenge)
    selected = select_volumes(files, subset, seed)
    slices, usable, problems = 0, [], []
    for path in selected:
        try:
            slices += check_volume(path, challenge, crop)[0]
            usable.append(path)
        except FastMRIFileError as error:
            if not skip_bad:
                raise
            problems.append(str(error))
    if not usable:
        raise FastMRIFileError(f"{source}: none of the {len(selected)} selected volumes is usable, e.g. {problems[0]}")
    _log_skipped(problems, len(selected))
    selected = usable
    temporary = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for path in selected:
        (temporary / path.name).symlink_to(path.resolve())
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(temporary, out_dir)
    log.info(
        "%s: %d of %d volumes checked (%d slices), linked in %s", source, len(selected), len(files), slices, out_dir
    )
    return selected


_URL = re.compile(r"https?://[^\s'\"]+")
_SHA256 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def parse_url_list(path: str | Path) -> list[tuple[str, str | None]]:
    """(URL, SHA-256 or None) per line of a fastMRI URL list.

    A line holds a URL, bare or inside the ``curl`` command of fastMRI's e-mail, and optionally a
    64-digit SHA-256 of the archive; empty lines and ``#`` comments are skipped.

    Raises:
        ValueError: A non-comment line has no URL, or the file lists none.
    """
    entries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        url = _URL.search(line)
        if url is None:
            raise ValueError(f"{path}:{number}: no http(s) URL in {line.strip()!r}")
        rest = line[: url.start()] + " " + line[url.end() :]
        digest = _SHA256.search(rest)
        entries.append((url.group(0), digest.group(0).lower() if digest else None))
    if not entries:
        raise ValueError(f"{path}: lists no URLs")
    return entries


def download_url_list(
    url_list: str | Path, out_dir: str | Path, keep_archives: bool = True, **download_options
) -> list[Path]:
    """Download every archive of ``url_list`` into ``out_dir`` and extract it there.

    Archives are resumed when interrupted and verified when the list gives a digest; an archive
    already extracted (marked by ``.<archive>.extracted``) is skipped, so the command can be rerun
    until everything is there.

    Returns:
        The extracted files.
    """
    out_dir = Path(out_dir)
    extracted = []
    for url, sha256 in parse_url_list(url_list):
        name = Path(urlparse(url).path).name
        if not name:
            raise ValueError(f"{url_list}: cannot take a file name from {url}")
        marker = out_dir / f".{name}.extracted"
        if marker.is_file():
            log.info("%s: already extracted, skipped", name)
            continue
        hint = f"download {name} by hand into {out_dir} and rerun"
        archive = download(url, out_dir / name, sha256, manual_hint=hint, **download_options)
        extracted += extract_tar(archive, out_dir)
        marker.write_text(f"{url}\n")
        if not keep_archives:
            archive.unlink()
    return extracted


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be a positive integer")
    return value


def _check_command(folders: list[Path], challenge: str, crop: int, full: bool) -> int:
    """Check every folder to the end: one line on stderr per unusable file or folder; 1 if any."""
    failed = False
    checked = unusable = 0
    for folder in folders:
        try:
            selected, problems = check_folder(folder, challenge, crop, full=full)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            failed = True
            continue
        for problem in problems:
            print(problem, file=sys.stderr)
        checked += len(selected)
        unusable += len(problems)
    print(f"{checked - unusable} of {checked} volumes usable" + (" (every slice read)" if full else ""))
    return 1 if failed or unusable else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m lossbench.data.fastmri_files", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate every .h5 file of folders; one line per unusable file")
    check.add_argument("--challenge", required=True, choices=sorted(RECON_KEYS))
    check.add_argument(
        "--crop", type=_positive_int, default=320, help="side of the centre crop the task uses (default 320)"
    )
    check.add_argument(
        "--full", action="store_true", help="read every slice: flags damaged chunks and NaN/inf values (slower)"
    )
    check.add_argument("folders", nargs="+", type=Path)
    fetch = commands.add_parser("download", help="download and extract the archives of fastMRI's URL list")
    fetch.add_argument(
        "--urls",
        required=True,
        type=Path,
        help="text file of URLs (or fastMRI's curl commands), optional SHA-256 per line",
    )
    fetch.add_argument("--out", required=True, type=Path, help="folder for the archives and their contents")
    fetch.add_argument("--delete-archives", action="store_true", help="delete each archive once extracted")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "check":
            return _check_command(args.folders, args.challenge, args.crop, args.full)
        files = download_url_list(args.urls, args.out, keep_archives=not args.delete_archives)
        print(f"extracted {len(files)} files into {args.out}")
    except (DownloadError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
