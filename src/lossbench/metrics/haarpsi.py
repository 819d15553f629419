"""The Haar wavelet-based perceptual similarity index, HaarPSI (Reisenhofer, Bosse, Kutyniok & Wiegand, 2018,
Signal Processing: Image Communication 61, 33-43), per image; its loss is :mod:`lossbench.losses.haarpsi`.

As the authors' MATLAB reference (``HaarPSI.m``, rgcda/haarpsi) defines it, on images scaled to
[0, 255]:

1. RGB images are taken to YIQ; a grayscale image is its own Y. The I and Q rows are the FCC NTSC
   matrix to four decimals, as ``piq.haarpsi`` has them (:data:`YIQ`), where the reference has MATLAB's
   ``rgb2ntsc`` to three (:data:`REFERENCE_YIQ`); Y is the same. The choice moves HaarPSI of RGB images
   by up to 2e-4 (docs/calibration.md), more than the 1e-4 within which lossbench's HaarPSI is to match
   its oracle, piq, so lossbench takes piq's.
2. With ``subsample`` (the paper's default, for the viewing distance of its psychophysical data),
   every channel is averaged over 2 × 2 blocks and every other row and column kept: MATLAB's
   ``conv2(·, ones(2)/4, 'same')`` then ``(1:2:end, 1:2:end)``, i.e. blocks from the top-left
   corner, the last one zero-padded on an odd side.
3. Y is filtered with the horizontal and vertical Haar wavelets of scales 1, 2 and 3
   (2^s × 2^s, entries ±2^−s, zero padding placed as MATLAB's ``conv2 'same'`` places it for an
   even kernel: 2^(s−1) − 1 before, 2^(s−1) after).
4. Per orientation, the local similarity is the mean over scales 1 and 2 of
   S(a, b) = (2|a||b| + C) / (a² + b² + C), C = 30, and the weight the larger magnitude of the two
   images' scale-3 coefficients. RGB adds a third map: the mean of S over |I| and |Q| averaged on
   2 × 2 blocks (same placement as step 2, no subsampling), weighted by the mean of the two weights.
5. HaarPSI = (logit(Σ σ(α·S)·w / Σ w) / α)², with the logistic σ(α·x) and α = 4.2.

It is symmetric in its two images, in (0, 1], and 1 for identical images. ``piq.haarpsi`` (piq 0.8.0,
same defaults) computes the same; tests/test_haarpsi.py checks agreement and docs/calibration.md states it.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from lossbench.core.checks import check_image_pair
from lossbench.core.precision import ieee_float32_autograd
from lossbench.core.specs import MetricInfo, MetricSpec

#: The paper's constants: C of the similarity S, α of the logistic function.
C = 30.0
ALPHA = 4.2
#: Haar scales: the similarity uses the first two, the weights the last.
SCALES = 3
#: The largest Haar filter's side, 2**SCALES.
LARGEST = 2**SCALES
#: RGB → YIQ, rows Y, I, Q: the FCC NTSC coefficients to four decimals, piq's.
YIQ = ((0.299, 0.587, 0.114), (0.5959, -0.2746, -0.3213), (0.2115, -0.5227, 0.3112))
#: The authors' reference's RGB → YIQ (HaarPSI.m; MATLAB's rgb2ntsc), not used: see the module's notes.
REFERENCE_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def min_side(subsample: bool = True) -> int:
    """The smallest image side HaarPSI takes: the coarsest Haar filter must fit the (subsampled) image."""
    return 2 * LARGEST if subsample else LARGEST


@functools.cache
def _constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The YIQ matrix (3, 3, 1, 1) and the Haar filters of scales 1, 2, 3 as two separable passes: (6, 1, 8, 1)
    kernels along the rows, then (6, 1, 1, 8) along the columns, one per channel of the first pass.

    A 2^s × 2^s Haar filter is 2^−s · (a step, −1 then +1) ⊗ (a box of ones): the first pass takes the rows' steps
    and boxes, the second the columns' boxes of the steps (the horizontal filter) and steps of the boxes (the
    vertical one, its transpose). Separable, the filters cost a quarter of the 8 × 8 kernels and their backward
    pass a third. The shorter filters sit in the 8-tap frame where MATLAB's ``conv2 'same'`` centres them, so that
    one correlation padded by 3 before and 4 after gives every coefficient of ``conv2``'s: a 2^s window covers
    the pixels from 2^(s−1) − 1 before to 2^(s−1) after, taps 4 − 2^(s−1) to 3 + 2^(s−1). The correlation's sign
    is that of a flipped convolution, which the magnitudes ignore. Made once per (dtype, device), outside
    inference mode so that autograd may save them.
    """
    with torch.inference_mode(False):
        steps = torch.zeros(SCALES, LARGEST, dtype=torch.float64)
        boxes = torch.zeros(SCALES, LARGEST, dtype=torch.float64)
        for scale in range(1, SCALES + 1):
            half = 2 ** (scale - 1)
            first, middle, last = LARGEST // 2 - half, LARGEST // 2, LARGEST // 2 + half
            steps[scale - 1, first:middle], steps[scale - 1, middle:last] = -1.0, 1.0
            boxes[scale - 1, first:last] = 1.0
        norms = torch.tensor([2.0**-scale for scale in range(1, SCALES + 1)], dtype=torch.float64).view(-1, 1)
        along_rows = torch.cat([steps, boxes]).view(2 * SCALES, 1, LARGEST, 1)
        along_columns = torch.cat([norms * boxes, norms * steps]).view(2 * SCALES, 1, 1, LARGEST)
        yiq = torch.tensor(YIQ, dtype=torch.float64).view(3, 3, 1, 1)
        return tuple(kernel.to(dtype=dtype, device=device) for kernel in (yiq, along_rows, along_columns))


def _similarity(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """S(a, b) of non-negative magnitudes; exactly 1 where a == b (2·a·b and a² + b² round alike)."""
    return (2 * a * b + c) / (a.square() + b.square() + c)


def _block_mean(images: torch.Tensor, stride: int) -> torch.Tensor:
    """Means over 2 × 2 blocks from each pixel to the next row and column, zero past the last (MATLAB's
    ``conv2(·, ones(2)/4, 'same')``), at every ``stride``-th pixel."""
    height, width = images.shape[-2:]
    # With stride 2 only an odd side reaches past the image; with stride 1 every last row and column does.
    pad = (0, width % 2, 0, height % 2) if stride == 2 else (0, 1, 0, 1)
    return F.avg_pool2d(F.pad(images, pad), kernel_size=2, stride=stride)


def _haarpsi(
    x: torch.Tensor, y: torch.Tensor, subsample: bool, c: float, alpha: float, data_range: float
) -> torch.Tensor:
    """HaarPSI per image of validated (N, C, H, W) images of the compute dtype, (N,)."""
    yiq, along_rows, along_columns = _constants(x.dtype, x.device)
    # Both images through every step in one batch, (2N, C, H, W), on the reference's [0, 255] scale.
    images = torch.cat([x, y]) * (255.0 / data_range)
    color = images.shape[1] == 3
    if color:
        images = F.conv2d(images, yiq)
    if subsample:
        images = _block_mean(images, stride=2)
    padding = (LARGEST // 2 - 1, LARGEST // 2, LARGEST // 2 - 1, LARGEST // 2)
    # (2N, 6, h, w): |coefficient| of scales 1, 2, 3 horizontal, then 1, 2, 3 vertical.
    steps_and_boxes = F.conv2d(F.pad(images[:, :1], padding), along_rows)
    magnitudes = F.conv2d(steps_and_boxes, along_columns, groups=2 * SCALES).abs()
    ours, theirs = magnitudes.chunk(2)
    ours, theirs = ours.unflatten(1, (2, SCALES)), theirs.unflatten(1, (2, SCALES))
    weights = torch.maximum(ours[:, :, -1], theirs[:, :, -1])  # (N, 2, h, w)
    local = _similarity(ours[:, :, :2], theirs[:, :, :2], c).mean(2)  # (N, 2, h, w)
    if color:
        chroma_ours, chroma_theirs = _block_mean(images[:, 1:], stride=1).abs().chunk(2)
        local = torch.cat([local, _similarity(chroma_ours, chroma_theirs, c).mean(1, keepdim=True)], dim=1)
        weights = torch.cat([weights, weights.mean(1, keepdim=True)], dim=1)
    weighted = (torch.sigmoid(alpha * local) * weights).flatten(1).sum(1)
    total = weights.flatten(1).sum(1)
    # Images without any coarse structure (both all zero) have no weight at all: a tiny weight of similarity 1 then
    # gives them HaarPSI 1 instead of 0/0, and moves any other pair's score by under eps/Σw (Σw is in the
    # thousands on the [0, 255] scale). piq's eps has σ(α·S) = 1 instead, which makes all-zero pairs infinite.
    eps = torch.finfo(x.dtype).eps
    score = (weighted + eps / (1 + math.exp(-alpha))) / (total + eps)
    return (torch.logit(score) / alpha).square()


def haarpsi(
    output: torch.Tensor,
    target: torch.Tensor,
    subsample: bool = True,
    c: float = C,
    alpha: float = ALPHA,
    data_range: float = 1.0,
) -> torch.Tensor:
    """HaarPSI per image, (N, C, H, W) -> (N,), in (0, 1], 1 for identical images.

    Computed in float32 (float64 inputs stay float64) with autocast disabled, and on GPUs without
    TF32, forward and backward: its Haar filters act on values up to 255. Differentiable; the
    gradient is finite everywhere (|·| and max have subgradients, every denominator is positive,
    and the score stays below σ(α) < 1, away from the logit's pole).

    Args:
        output: Images of shape (N, C, H, W), C in {1, 3} (RGB: YIQ; 1 channel: grayscale), values in
            [0, ``data_range``]. Each side must be at least :func:`min_side` (16 pixels with ``subsample``,
            else 8).
        target: Reference images of the same shape (HaarPSI is symmetric in its two images).
        subsample: Average 2 × 2 blocks and halve the image first, as the paper does.
        c: The constant C of the local similarity, on the [0, 255] scale (the paper's 30).
        alpha: The logistic function's α (the paper's 4.2).
        data_range: The value of white: images are scaled by 255 / ``data_range``.

    Returns:
        Tensor of shape (N,) in the compute dtype.
    """
    check_image_pair(output, target, "haarpsi")
    height, width = output.shape[-2:]
    if min(height, width) < min_side(subsample):
        raise ValueError(
            f"haarpsi: image size {height}x{width} is too small, each side must be at least {min_side(subsample)}"
            f" pixels ({'the 2 × 2 subsampling, then ' if subsample else ''}the {LARGEST}-pixel Haar filter of scale"
            f" {SCALES})"
        )
    dtype = torch.promote_types(output.dtype, torch.float32)
    function = functools.partial(_haarpsi, subsample=subsample, c=float(c), alpha=float(alpha), data_range=data_range)
    with torch.autocast(device_type=output.device.type, enabled=False):
        x, y = output.to(dtype), target.to(dtype)
        if dtype == torch.float64:
            # TF32 rounds only float32 products, and gradcheck differentiates the graph more than once, which the
            # replayed graph of ieee_float32_autograd does not allow.
            return function(x, y)
        return ieee_float32_autograd(function, x, y)


def _too_small(side: int) -> str | None:
    if side < min_side():
        return f"the haarpsi metric's subsampling and 8-pixel Haar filter (the side must be at least {min_side()})"
    return None


METRIC = MetricSpec(
    "haarpsi",
    haarpsi,
    MetricInfo("HaarPSI", higher_is_better=True),
    too_small=_too_small,
    thesis=False,
    best=1.0,
    differentiable=True,
    reference=(
        "Reisenhofer, Bosse, Kutyniok & Wiegand 2018, A Haar wavelet-based perceptual similarity index for image"
        " quality assessment (Signal Processing: Image Communication); checked against piq (docs/calibration.md)"
    ),
)
