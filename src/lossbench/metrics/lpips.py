"""LPIPS (thesis §2.4.4; Zhang et al., 2018) as a metric, and the LPIPS + l2 loss of Kaplanyan et al.

The network is the ``lpips`` package's AlexNet trunk with the v0.1 "lin" layers (the variant the
thesis used). The lin weights ship inside the package; the AlexNet ImageNet weights do not, and
torchvision would try to download them, which hangs or fails offline. This module therefore
always builds the trunk untrained and loads torchvision's checkpoint
``alexnet-owt-7be5be79.pth`` itself when it is available:

* ``trunk="pretrained"``: the checkpoint must exist, otherwise a one-line error says where to
  put it and where torchvision downloads it from.
* ``trunk="auto"``: the checkpoint if it exists, otherwise an untrained trunk initialised from a
  fixed seed (reproducible across runs on one torch version) with a logged warning.
* ``trunk="untrained"``: always the seeded untrained trunk.

Results from an untrained trunk are not LPIPS as published; label them with :func:`trunk_label`.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from pathlib import Path
from typing import Literal

import lpips
import torch
from torch import nn

from lossbench.checks import check_image_pair

Trunk = Literal["auto", "pretrained", "untrained"]

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILENAME}"
#: Seed of the untrained trunk's initialisation.
UNTRAINED_SEED = 0

# lpips' own normalisation divides by sqrt(sum f²) + 1e-10; at an all-zero feature vector the
# sqrt has an infinite derivative and the backward pass yields NaN. Clamping the squared norm
# from below leaves every value with norm above 1e-10 unchanged and keeps gradients finite.
_NORM_EPS = 1e-10

_log = logging.getLogger(__name__)


def default_weights_path() -> Path:
    """Where torchvision caches the AlexNet checkpoint: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILENAME


def trunk_label(pretrained: bool) -> str:
    """Table label for LPIPS values computed with a pretrained or an untrained trunk."""
    return "LPIPS" if pretrained else "LPIPS (untrained AlexNet trunk)"


def resolve_trunk(trunk: Trunk = "auto", weights_path: str | os.PathLike | None = None) -> Literal["pretrained", "untrained"]:
    """Which trunk the settings give here: ``"pretrained"`` when the checkpoint is found, else ``"untrained"``.

    Raises:
        ValueError: ``trunk`` is not one of ``auto``, ``pretrained``, ``untrained``.
        FileNotFoundError: ``trunk="pretrained"``, or an explicit ``weights_path``, names no file.
    """
    if trunk not in ("auto", "pretrained", "untrained"):
        raise ValueError(f"LPIPS: trunk must be 'auto', 'pretrained' or 'untrained', got {trunk!r}")
    if trunk == "untrained":
        return "untrained"
    explicit = weights_path is not None
    path = Path(weights_path) if explicit else default_weights_path()
    if path.is_file():
        return "pretrained"
    if explicit or trunk == "pretrained":
        raise FileNotFoundError(
            f"LPIPS: AlexNet weights not found at {path}; download {ALEXNET_URL} to that path "
            f"or pass weights_path=, or use trunk='auto'/'untrained'"
        )
    return "untrained"


def _normalize_channels(features: torch.Tensor) -> torch.Tensor:
    """Unit-normalise (N, C, H, W) features along C, with a finite gradient at zero vectors."""
    norm = features.square().sum(dim=1, keepdim=True).clamp_min(_NORM_EPS**2).sqrt()
    return features / (norm + _NORM_EPS)


def _load_trunk(net: lpips.LPIPS, path: Path) -> None:
    """Copy torchvision AlexNet ``features.*`` weights into the lpips trunk."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"LPIPS: {path} is not a state dict, got {type(state).__name__}")
    mapped = {}
    # lpips splits AlexNet.features into slices but keeps torchvision's layer indices, so the
    # key "slice2.3.weight" corresponds to "features.3.weight".
    for key, param in net.net.state_dict().items():
        source = "features." + key.split(".", 1)[1]
        if source not in state:
            raise ValueError(f"LPIPS: {path} lacks AlexNet key {source!r}, expected torchvision's alexnet state dict")
        if state[source].shape != param.shape:
            raise ValueError(
                f"LPIPS: {path} key {source!r} has shape {tuple(state[source].shape)}, expected {tuple(param.shape)}"
            )
        mapped[key] = state[source]
    net.net.load_state_dict(mapped)


class LPIPSModel:
    """Frozen LPIPS network (AlexNet trunk, v0.1 lin layers) giving one distance per image pair.

    Deliberately not an ``nn.Module``: a loss holding it does not expose its parameters to an
    optimiser, and ``loss.train()`` cannot switch it out of eval mode.

    Args:
        trunk: ``"auto"``, ``"pretrained"`` or ``"untrained"``, see the module docstring.
        weights_path: torchvision AlexNet checkpoint; ``None`` means :func:`default_weights_path`.
            A path given explicitly must exist (also for ``"auto"``).
        device: Device the network lives on.

    Attributes:
        trunk_pretrained: Whether the trunk holds the checkpoint's weights.
        weights_path: The checkpoint loaded, or ``None`` for an untrained trunk.
    """

    def __init__(
        self, trunk: Trunk = "auto", weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.trunk_pretrained = resolve_trunk(trunk, weights_path) == "pretrained"
        path = Path(weights_path) if weights_path is not None else default_weights_path()
        self.weights_path = path if self.trunk_pretrained else None

        # Seed a forked RNG: the untrained trunk is reproducible and the caller's random stream
        # (data order, network init) is untouched. torchvision's deprecated `pretrained=` keyword,
        # which lpips still passes, would otherwise warn on every construction.
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(UNTRAINED_SEED)
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if self.trunk_pretrained:
            _load_trunk(net, path)
        elif trunk == "auto":
            _log.warning(
                "LPIPS: AlexNet weights not found at %s; using an untrained trunk seeded with %d, "
                "label results %r",
                path,
                UNTRAINED_SEED,
                trunk_label(False),
            )
        self.net = net.eval().requires_grad_(False).to(device)

    @property
    def label(self) -> str:
        """Table label, see :func:`trunk_label`."""
        return trunk_label(self.trunk_pretrained)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image, (N, C, H, W) in [0, 1] -> (N,) float32, 0 for identical images.

        Grayscale (C = 1) is repeated into three channels. Computed in float32 with autocast
        disabled; differentiable with respect to both inputs.
        """
        check_image_pair(output, target, "lpips")
        with torch.autocast(device_type=output.device.type, enabled=False):
            images = torch.cat([output, target]).float().expand(-1, 3, -1, -1)
            # One trunk pass for both images; lpips expects [-1, 1] before its scaling layer.
            features = self.net.net(self.net.scaling_layer(2 * images - 1))
            distance = images.new_zeros(output.shape[0])
            for layer, feats in zip(self.net.lins, features):
                feats_out, feats_target = _normalize_channels(feats).chunk(2)
                distance = distance + layer((feats_out - feats_target).square()).mean(dim=(1, 2, 3))
            return distance


@functools.lru_cache(maxsize=None)
def _cached_model(trunk: Trunk, path: str, explicit: bool, device: torch.device) -> LPIPSModel:
    return LPIPSModel(trunk, path if explicit else None, device)


def get_lpips(
    trunk: Trunk = "auto", weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> LPIPSModel:
    """Shared :class:`LPIPSModel` for these settings, built once per process and device.

    The cache is keyed by the checkpoint location (including the default one, which moves with
    ``torch.hub.get_dir()``), not by whether the file exists: a checkpoint placed there after the
    first call is picked up in a new process.
    """
    explicit = weights_path is not None
    path = Path(weights_path).resolve() if explicit else default_weights_path()
    return _cached_model(trunk, str(path), explicit, torch.device(device))


def lpips_distance(
    output: torch.Tensor,
    target: torch.Tensor,
    trunk: Trunk = "auto",
    weights_path: str | os.PathLike | None = None,
) -> torch.Tensor:
    """LPIPS per image, (N, C, H, W) in [0, 1] -> (N,) float32; lower is more similar.

    Args:
        output: Images of shape (N, C, H, W), C in {1, 3}, values in [0, 1].
        target: Reference images of the same shape.
        trunk: Trunk weights policy, see the module docstring.
        weights_path: torchvision AlexNet checkpoint, default in the torch hub cache.
    """
    check_image_pair(output, target, "lpips")
    return get_lpips(trunk, weights_path, output.device)(output, target)


class LPIPSL2Loss(nn.Module):
    """LPIPS + l2 loss (Kaplanyan et al., 2019; thesis §2.4.4), a scalar over the batch.

    ``lpips_weight · mean LPIPS + l2_weight · MSE``, computed in float32. The LPIPS network is
    shared, frozen and not a submodule, so ``parameters()`` yields nothing.

    Args:
        lpips_weight: Weight of the mean LPIPS distance.
        l2_weight: Weight of the mean squared error over pixels, channels and images.
        trunk: Trunk weights policy, see the module docstring. Resolved at construction, so a
            missing checkpoint with ``trunk="pretrained"`` fails here rather than mid-training.
        weights_path: torchvision AlexNet checkpoint, default in the torch hub cache.

    Attributes:
        trunk_pretrained: Whether the LPIPS trunk holds ImageNet weights.
    """

    def __init__(
        self,
        lpips_weight: float = 1.0,
        l2_weight: float = 1.0,
        trunk: Trunk = "auto",
        weights_path: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.lpips_weight = lpips_weight
        self.l2_weight = l2_weight
        self.trunk: Trunk = trunk
        self.weights_path = weights_path
        self.trunk_pretrained = get_lpips(trunk, weights_path).trunk_pretrained

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss for (N, C, H, W) images in [0, 1]."""
        check_image_pair(output, target, "lpips+l2")
        distance = get_lpips(self.trunk, self.weights_path, output.device)(output, target).mean()
        with torch.autocast(device_type=output.device.type, enabled=False):
            mse = (output.float() - target.float()).square().mean()
        return self.lpips_weight * distance + self.l2_weight * mse

    def extra_repr(self) -> str:
        return (
            f"lpips_weight={self.lpips_weight}, l2_weight={self.l2_weight}, trunk={self.trunk!r}, "
            f"trunk_pretrained={self.trunk_pretrained}"
        )
