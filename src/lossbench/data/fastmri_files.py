"""Real fastMRI data: per-file validation, the checked file folders training reads, and download.

* :func:`check_volume` (:mod:`lossbench.data.fastmri_volume`) validates one ``.h5`` volume (HDF5
  readable and complete, datasets, shapes, dtypes, ISMRMRD header, attributes) and raises one line
  naming the file and what is wrong; every genuine fastMRI layout passes.
* :func:`link_checked` checks every volume of a folder and, only when all pass, replaces the output
  folder by symbolic links to them (optionally a seeded subset: the thesis validated brain models on
  a subset of the official brain *train* set, §4.2), so a failing check leaves earlier outputs alone.
  With ``skip_bad`` (config ``tasks.<knee|brain>.data.skip_bad``) unusable volumes are instead left
  out, each listed in one warning line of the log, and the rest is linked.
* :func:`download_url_list` (:mod:`lossbench.data.fastmri_download`) fetches the archives of the URL
  list fastMRI e-mails on registration, resumably and with SHA-256 checks where the list gives
  digests, and extracts them.

The format's names and layouts are :mod:`lossbench.data.fastmri_format`'s; the public names of these
modules are imported here too.

Command line: ``python -m lossbench.data.fastmri_files {check,download} --help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from lossbench.core.seeding import derive_seed
from lossbench.data.download import DownloadError
from lossbench.data.fastmri_download import download_url_list, parse_url_list
from lossbench.data.fastmri_format import HEADER_FIELDS, KSPACE_NDIM, RECON_KEYS, crop_side
from lossbench.data.fastmri_volume import FastMRIFileError, check_volume

log = logging.getLogger(__name__)

__all__ = [
    "FastMRIFileError",
    "HEADER_FIELDS",
    "KSPACE_NDIM",
    "check_folder",
    "check_volume",
    "crop_side",
    "download_url_list",
    "link_checked",
    "main",
    "parse_url_list",
    "select_volumes",
    "volume_files",
]


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
