"""Safe extraction of the downloaded archives: nothing outside the target folder, no member cut off."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from lossbench.data.download.common import CHUNK, DownloadError


def extract_tar(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract the tar archive (``.tar``, ``.tar.gz``, ``.tar.xz``, ...) into ``target``; return the files.

    The archive is read once, front to back (fastMRI's archives hold hundreds of gigabytes), and each
    member is checked before it is written: absolute names, ``..`` components, links and device
    files are refused, so nothing is written outside ``target``. Each file is written under a
    temporary name (``<name>.partial``) and renamed only once all its bytes are there, so a member
    cut off by a truncated archive never appears under its final name. An unsafe or cut-off member
    stops the extraction; the members before it stay in ``target``.

    Raises:
        DownloadError: The archive is unreadable, truncated or has an unsafe member.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    files = []
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                destination = (root / member.name).resolve()
                if not (member.isfile() or member.isdir()):
                    raise DownloadError(
                        f"{archive}: member {member.name!r} is a link or special file; refusing to extract"
                    )
                if destination != root and root not in destination.parents:
                    raise DownloadError(
                        f"{archive}: member {member.name!r} would be written outside {target}; refusing to extract"
                    )
                # The "data" filter repeats these checks inside tarfile and clears permission bits
                # that would make files executable or writable by others.
                safe = tarfile.data_filter(member, str(root))
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                _extract_file(tar, member, safe, destination, archive)
                files.append(target / member.name)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadError(f"{archive}: cannot extract ({error})") from None
    return files


def _extract_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, safe: tarfile.TarInfo, destination: Path, archive: Path
) -> None:
    """Write ``member``'s bytes to ``destination`` through a temporary file renamed on completion."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".partial")
    try:
        source = tar.extractfile(member)
        written = 0
        with open(temporary, "wb") as handle:
            while chunk := source.read(CHUNK):
                handle.write(chunk)
                written += len(chunk)
        if written != member.size:
            raise DownloadError(
                f"{archive}: member {member.name!r} is cut off after {written} of {member.size} bytes; the archive is"
                " incomplete, download it again"
            )
        if safe.mode is not None:
            os.chmod(temporary, safe.mode)
        if safe.mtime is not None:
            os.utime(temporary, (safe.mtime, safe.mtime))
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
