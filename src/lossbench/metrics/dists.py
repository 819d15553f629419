"""DISTS, the deep image structure and texture similarity (Ding, Ma, Wang & Simoncelli, 2020, "Image Quality
Assessment: Unifying Structure and Texture Similarity", IEEE TPAMI 44(5)), per image; its loss is
:mod:`lossbench.losses.dists`. Not one of the thesis's metrics.

As the authors' PyTorch reference (``DISTS_pt.py`` of the ``DISTS_pytorch`` 0.1 wheel) defines it:

1. Images in [0, 1] (grayscale repeated into RGB) are normalised by ImageNet's mean and standard deviation and
   passed through VGG16's 13 convolutions with their ReLUs, where each of the four max-poolings is replaced by
   an L2 pooling: the square root of a 3 × 3 Hann-weighted mean of the squares ([1, 2, 1] ⊗ [1, 2, 1] / 16),
   stride 2, zero padding 1, plus 1e-12 under the root.
2. Six representations are compared: the image itself (not normalised, 3 channels) and relu1_2, relu2_2,
   relu3_3, relu4_3, relu5_3 (64, 128, 256, 512, 512 channels). Per channel, over its whole map, the structure
   term S1 = (2 μx μy + c) / (μx² + μy² + c) compares the means and the texture term
   S2 = (2 σxy + c) / (σx² + σy² + c) the (population) variances and covariance, c = 1e-6.
3. DISTS = 1 − Σ (α S1 + β S2) over the 1475 channels, with the learnt α, β ≥ 0 divided by their joint sum:
   0 for identical images, larger for more distortion.

One change of arithmetic, not of definition: the reference takes the covariance as E[xy] − μx μy and the
variances as E[(x − μ)²]; here both are centred, E[(x − μx)(y − μy)], so that identical images give S2 = 1
exactly in float32 (the reference's differ by rounding; the values agree within float32's precision).

Weights: the pretrained VGG16 and α/β come from :mod:`lossbench.metrics.dists_weights` (cached, or fetched once
through the package index; without it one line says what to put where). ``trunk="untrained"``, for tests and
benchmarks without weights, takes a VGG16 initialised from a fixed seed as torchvision initialises it and equal
α/β: not DISTS as published. docs/calibration.md compares the pretrained metric with the official values.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

from lossbench.core.checks import check_image_pair
from lossbench.core.precision import ieee_float32_autograd
from lossbench.core.specs import MetricInfo, MetricSpec
from lossbench.metrics.dists_weights import CHANNELS, TRUNK, alpha_beta_path, find_alpha_beta, load_alpha_beta
from lossbench.metrics.lpips_sdist import TRUNKS
from lossbench.metrics.lpips_weights import find_trunk, trunk_location

Trunk = Literal["pretrained", "untrained"]

#: The constants c1 = c2 of the structure and texture terms.
C = 1e-6
#: ImageNet's channel means and standard deviations, which VGG16's inputs are normalised by.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: VGG16's convolutions per stage; an L2 pooling precedes every stage but the first.
STAGES = (2, 2, 3, 3, 3)
#: Seed of the untrained trunk's initialisation.
UNTRAINED_SEED = 0
#: The smallest image side: relu5_3, after four halvings (⌈side / 16⌉), must keep two pixels for its texture term.
MIN_SIDE = 17


def _shapes() -> dict[str, tuple[int, ...]]:
    """VGG16's convolution weights and biases under torchvision's ``features.<i>`` keys, with their shapes."""
    widths = [width for width, convs in zip(CHANNELS[1:], STAGES) for _ in range(convs)]
    shapes = {}
    for index, (inputs, outputs) in zip(TRUNKS[TRUNK].conv_indices, zip([3, *widths], widths)):
        shapes[f"features.{index}.weight"], shapes[f"features.{index}.bias"] = (outputs, inputs, 3, 3), (outputs,)
    return shapes


def _untrained_state() -> dict[str, torch.Tensor]:
    """A VGG16 trunk initialised as torchvision initialises one (Kaiming normal, fan-out, zero biases), seeded."""
    generator = torch.Generator().manual_seed(UNTRAINED_SEED)
    return {
        key: torch.randn(shape, generator=generator) * (2.0 / (shape[0] * 9)) ** 0.5
        if len(shape) == 4
        else torch.zeros(shape)
        for key, shape in _shapes().items()
    }


def _trunk_state(path) -> dict[str, torch.Tensor]:
    """The convolutions of a VGG16 checkpoint with torchvision's ``features.<i>`` keys, shapes checked."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"DISTS: {path} is not a state dict, got {type(state).__name__}")
    for key, shape in _shapes().items():
        if not (isinstance(state.get(key), torch.Tensor) and tuple(state[key].shape) == shape):
            got = tuple(state[key].shape) if isinstance(state.get(key), torch.Tensor) else "missing"
            raise ValueError(f"DISTS: {path}: {key} is {got}, expected {shape} (torchvision's VGG16)")
    return {key: state[key].float() for key in _shapes()}


class DISTSModel:
    """The frozen DISTS network: VGG16 convolutions, L2 pooling and the α/β weights, per dtype and device.

    Deliberately not an ``nn.Module``: a loss holding it exposes no parameters to an optimiser.

    Args:
        trunk: ``pretrained`` (found or fetched, see :mod:`lossbench.metrics.dists_weights`) or ``untrained``
            (seeded VGG16, equal α/β: for tests and benchmarks only).
    """

    def __init__(self, trunk: Trunk = "pretrained") -> None:
        if trunk not in ("pretrained", "untrained"):
            raise ValueError(f"DISTS: trunk must be 'pretrained' or 'untrained', got {trunk!r}")
        if trunk == "pretrained":
            state = _trunk_state(find_trunk(None, TRUNK))
            alpha, beta = load_alpha_beta(find_alpha_beta())
        else:
            state = _untrained_state()
            alpha = beta = torch.ones(sum(CHANNELS))
        total = alpha.sum() + beta.sum()
        keys = [f"features.{index}" for index in TRUNKS[TRUNK].conv_indices]
        self.trunk = trunk
        self._float32 = {
            "convs": [(state[f"{key}.weight"], state[f"{key}.bias"]) for key in keys],
            "alpha": (alpha / total).split(CHANNELS),
            "beta": (beta / total).split(CHANNELS),
        }
        self._tensors: dict[tuple[torch.dtype, torch.device], dict] = {}

    def _on(self, dtype: torch.dtype, device: torch.device) -> dict:
        """The network's tensors in ``dtype`` on ``device``, made once, outside inference mode (autograd saves them)."""
        if (dtype, device) not in self._tensors:
            with torch.inference_mode(False):
                to = functools.partial(torch.Tensor.to, dtype=dtype, device=device)
                pool = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64) / 4
                self._tensors[dtype, device] = {
                    "convs": [(to(weight), to(bias)) for weight, bias in self._float32["convs"]],
                    "alpha": [to(part) for part in self._float32["alpha"]],
                    "beta": [to(part) for part in self._float32["beta"]],
                    "pool": to(torch.outer(pool, pool)).view(1, 1, 3, 3),
                    "mean": to(torch.tensor(MEAN, dtype=torch.float64)).view(1, 3, 1, 1),
                    "std": to(torch.tensor(STD, dtype=torch.float64)).view(1, 3, 1, 1),
                }
        return self._tensors[dtype, device]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The six representations of (N, 3, H, W) images in [0, 1]: the images, relu1_2, ..., relu5_3."""
        tensors = self._on(images.dtype, images.device)
        convs = iter(tensors["convs"])
        h = (images - tensors["mean"]) / tensors["std"]
        representations = [images]
        for stage, count in enumerate(STAGES):
            if stage:
                # L2 pooling: depthwise Hann-weighted mean of the squares, stride 2; the 1e-12 keeps sqrt's gradient
                # finite where a whole window is zero (dead ReLUs).
                channels = h.shape[1]
                pooled = F.conv2d(
                    h.square(), tensors["pool"].expand(channels, 1, 3, 3), stride=2, padding=1, groups=channels
                )
                h = (pooled + 1e-12).sqrt()
            for _ in range(count):
                weight, bias = next(convs)
                h = F.relu(F.conv2d(h, weight, bias, padding=1))
            representations.append(h)
        return representations

    def distance(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """DISTS of validated (N, C, H, W) images of one floating dtype, (N,)."""
        tensors = self._on(output.dtype, output.device)
        ours = self.features(output.expand(-1, 3, -1, -1))
        # A loss's target needs no gradient: its pass keeps no graph.
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            theirs = self.features(target.expand(-1, 3, -1, -1))
        similarity = output.new_zeros(output.shape[0])
        for x, y, alpha, beta in zip(ours, theirs, tensors["alpha"], tensors["beta"]):
            mean_x, mean_y = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
            centred_x, centred_y = x - mean_x, y - mean_y
            variance_x, variance_y = centred_x.square().mean((2, 3)), centred_y.square().mean((2, 3))
            covariance = (centred_x * centred_y).mean((2, 3))
            mean_x, mean_y = mean_x.flatten(1), mean_y.flatten(1)
            structure = (2 * mean_x * mean_y + C) / (mean_x.square() + mean_y.square() + C)
            texture = (2 * covariance + C) / (variance_x + variance_y + C)
            similarity = similarity + (structure * alpha).sum(1) + (texture * beta).sum(1)
        return 1 - similarity


@functools.lru_cache(maxsize=None)
def _cached_model(trunk: Trunk, trunk_file: str, alpha_beta_file: str) -> DISTSModel:
    return DISTSModel(trunk)


def get_dists(trunk: Trunk = "pretrained") -> DISTSModel:
    """The shared :class:`DISTSModel` for ``trunk``, built once per process and weights location (which moves with
    ``$LOSSBENCH_CACHE`` and ``torch.hub.get_dir()``)."""
    return _cached_model(trunk, str(trunk_location(None, TRUNK)), str(alpha_beta_path()))


def dists(output: torch.Tensor, target: torch.Tensor, trunk: Trunk = "pretrained") -> torch.Tensor:
    """DISTS per image, (N, C, H, W) in [0, 1] -> (N,), in [0, 1], 0 for identical images; lower is more similar.

    Computed in float32 (float64 inputs stay float64) with autocast disabled and, on GPUs, without TF32, forward
    and backward. Differentiable with respect to both images (finite gradients at identical and at black images).

    Args:
        output: Images of shape (N, C, H, W), C in {1, 3} (grayscale is repeated into RGB), values in [0, 1];
            each side at least :data:`MIN_SIDE`.
        target: Reference images of the same shape.
        trunk: ``pretrained`` (DISTS as published) or ``untrained`` (tests without weights), see :class:`DISTSModel`.
    """
    check_image_pair(output, target, "dists")
    height, width = output.shape[-2:]
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"dists: image size {height}x{width} is too small, each side must be at least {MIN_SIDE} pixels"
        )
    model = get_dists(trunk)
    dtype = torch.promote_types(output.dtype, torch.float32)
    with torch.autocast(device_type=output.device.type, enabled=False):
        x, y = output.to(dtype), target.to(dtype)
        if dtype == torch.float64:
            # gradcheck differentiates more than once, which ieee_float32_autograd's replayed graph does not allow.
            return model.distance(x, y)
        return ieee_float32_autograd(model.distance, x, y)


def _too_small(side: int) -> str | None:
    if side < MIN_SIDE:
        return f"the dists metric's texture term at relu5_3, 1/16 of the side (the side must be at least {MIN_SIDE})"
    return None


METRIC = MetricSpec(
    "dists",
    dists,
    MetricInfo("DISTS", higher_is_better=False),
    portable_params={"trunk": "untrained"},
    too_small=_too_small,
    thesis=False,
    differentiable=True,
    reference=(
        "Ding, Ma, Wang & Simoncelli 2020, Image quality assessment: unifying structure and texture similarity"
        " (IEEE TPAMI); DISTS_pytorch 0.1 weights, checked against the official values (docs/calibration.md)"
    ),
)
