"""fastMRI's URL list: the archives of the list fastMRI e-mails on registration, downloaded resumably, checked
against the list's SHA-256 digests where it gives them, and extracted."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlparse

from lossbench.data.download import download, extract_tar

log = logging.getLogger(__name__)

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
