"""FLIP's filtering stage: linear images to the CSF- and feature-filtered channels, with its backward pass.

Both filtering directions are applied to one stack of 8 channels (3 for the linear gray modes: Y and two
copies of y) built by one affine map from linear RGB: the CSF inputs Y, Cx, Cz, Cz (the blue-yellow filter is a sum
of two separable Gaussians, hence two copies) and four copies of the normalised luminance
(Y + 16) / 116 for the feature detectors, which the two passes turn into dy, ddy, dx and ddx.
:mod:`lossbench.flip._core` compares the filtered channels of the reference and the test image.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from lossbench.flip import _color, _filters

#: Modes whose input is linear grayscale, taken straight to the achromatic channel Y = 116 y - 16.
LINEAR_GRAY_MODES = ("gray_thesis", "gray_lab")


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The 1x1 convolution of (N, C, H, W) ``x`` with (K, C, 1, 1) ``weight``: a colour map of every pixel."""
    # A 1x1 kernel reads no neighbours, so its dilation changes nothing but PyTorch's choice of kernel: on one CPU
    # thread, for fewer than 16 images, it would take its native path, 4 times slower on channels-last tensors than
    # oneDNN's, which it takes for a dilated convolution.
    return F.conv2d(x, weight, bias, dilation=2 if x.device.type == "cpu" else 1)


def pointwise(weight: np.ndarray, x: torch.Tensor, offset: np.ndarray | None = None) -> torch.Tensor:
    """The (K, C, 1, 1) ``weight`` and (K,) ``offset`` applied to each pixel of (N, C, H, W) ``x``."""
    bias = None if offset is None else _color.device_constant(offset, x.dtype, x.device)
    return conv1x1(x, _color.device_constant(weight, x.dtype, x.device), bias)


@functools.lru_cache(maxsize=16)
def _plan(mode: str, ppd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Affine input map and per-channel kernels of both filtering passes for ``mode``.

    Returns:
        ``(matrix, offset, x_kernels, y_kernels)``: ``matrix`` (C, C_in) and ``offset`` (C,)
        map the linear input channels to the C filter channels; the kernels are (C, 2r+1).
    """
    csf = _filters.csf_kernels(ppd)
    feat = _filters.feature_kernels(ppd)
    radius = max(_filters.csf_radius(ppd), _filters.feature_radius(ppd))
    k = {name: _filters.pad_kernel(v, radius) for name, v in {**csf, **feat}.items()}
    if mode in LINEAR_GRAY_MODES:
        # Input is linear luminance y: Y = 116 y - 16 for the CSF, y itself for the edges.
        matrix = np.array([[116.0], [1.0], [1.0]])
        offset = np.array([-16.0, 0.0, 0.0])
        x_kernels = np.stack([k["y"], k["g"], k["dg"]])
        y_kernels = np.stack([k["y"], k["dg"], k["g"]])
        return matrix, offset, x_kernels, y_kernels
    ycxcz = _color.RGB_TO_YCXCZ
    luminance = ycxcz[0] / 116.0
    matrix = np.stack([ycxcz[0], ycxcz[1], ycxcz[2], ycxcz[2]] + [luminance] * 4)
    offset = np.array([-16.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    if mode == "gray_replicated":
        # A grey pixel v is (v, v, v) in linear RGB, so the 3-column map collapses to row sums.
        matrix = matrix.sum(axis=1, keepdims=True)
    x_kernels = np.stack([k["y"], k["cx"], k["cz1"], k["cz2"], k["g"], k["g"], k["dg"], k["ddg"]])
    y_kernels = np.stack([k["y"], k["cx"], k["cz1"], k["cz2"], k["dg"], k["ddg"], k["g"], k["g"]])
    return matrix, offset, x_kernels, y_kernels


class Filters(NamedTuple):
    """The plan of :func:`_plan` as convolution weights of one dtype on one device, with their adjoints."""

    radius: int
    #: (C, C_in, 1, 1) weight and (C,) bias of the affine map to the C filter channels, and its transpose.
    stack: torch.Tensor
    offset: torch.Tensor
    stack_adjoint: torch.Tensor
    #: (C, 1, 1, 2r+1) and (2C, 1, 2r+1, 1) depthwise weights of the horizontal and vertical passes, and each
    #: flipped, whose convolution is a pass's adjoint. The vertical ones hold the C kernels twice, for
    #: :func:`_vertical`'s pixel pairs; their first C are the plain ones.
    x_weight: torch.Tensor
    y_weight: torch.Tensor
    x_adjoint: torch.Tensor
    y_adjoint: torch.Tensor


@functools.lru_cache(maxsize=32)
def filters_on(mode: str, ppd: float, device: str, dtype: torch.dtype) -> Filters:
    """:func:`_plan` for ``mode`` and ``ppd`` as tensors of ``dtype`` on ``device``, copied there once."""
    matrix, offset, x_kernels, y_kernels = _plan(mode, ppd)
    channels, width = x_kernels.shape

    def tensor(array: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        # float64 until the cast: a float64 pass keeps the kernels' precision, a float32 one gets each value's nearest
        # float32.
        return torch.from_numpy(np.ascontiguousarray(array)).to(device=device, dtype=dtype).view(shape)

    # Outside inference mode: an evaluation's first call must not cache tensors training cannot save for backward.
    with torch.inference_mode(False):
        return Filters(
            width // 2,
            tensor(matrix, (channels, matrix.shape[1], 1, 1)),
            tensor(offset, (channels,)),
            tensor(matrix.T, (matrix.shape[1], channels, 1, 1)),
            tensor(x_kernels, (channels, 1, 1, width)),
            tensor(np.tile(y_kernels, (2, 1)), (2 * channels, 1, width, 1)),
            tensor(x_kernels[:, ::-1], (channels, 1, 1, width)),
            tensor(np.tile(y_kernels[:, ::-1], (2, 1)), (2 * channels, 1, width, 1)),
        )


class _FilterPasses(torch.autograd.Function):
    """:func:`filter_channels`: the borders replicated, the colour map to the filter channels and the two
    depthwise passes.

    Their backward pass is three forward convolutions and the sums of the replicated borders: each pass's
    adjoint is the convolution of the gradient, zero-padded by the kernel's width, with the flipped kernel,
    and the colour map's the transposed map. oneDNN's own backward of a depthwise convolution takes 2 to
    4 times longer, and PyTorch's of the padding 4 times longer than :func:`_replication_adjoint`.
    """

    @staticmethod
    def forward(ctx, images: torch.Tensor, filters: Filters) -> torch.Tensor:
        ctx.filters = filters
        r = filters.radius
        # Replicated in NCHW, then channels-last: the padding is 3 times faster in that order.
        padded = F.pad(images.contiguous(), (r, r, r, r), mode="replicate")
        stack = conv1x1(padded.contiguous(memory_format=torch.channels_last), filters.stack, filters.offset)
        return _vertical(F.conv2d(stack, filters.x_weight, groups=stack.shape[1]), filters.y_weight, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        filters = ctx.filters
        channels, width = grad.shape[1], 2 * filters.radius
        grad = _vertical(grad, filters.y_adjoint, width)
        grad = F.conv2d(grad, filters.x_adjoint, padding=(0, width), groups=channels)
        return _replication_adjoint(conv1x1(grad, filters.stack_adjoint), filters.radius), None


def _vertical(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """The depthwise vertical pass of channels-last (N, C, H, W) ``x`` with :class:`Filters`' doubled (2C, 1, k, 1)
    ``weight``, zero-padded by ``padding`` rows on each side: (N, C, H + 2 padding - k + 1, W).

    On the CPU, with W even, each pair of neighbouring pixels of a row is read as one pixel of 2C channels (the same
    memory): a vertical pass never mixes columns, and oneDNN's depthwise kernel fills its 16-lane vectors with 16
    channels, not 8, which makes the pass about a quarter faster, with the same sums in the same order.
    """
    batch, channels, height, width = x.shape
    paired = x.device.type == "cpu" and width % 2 == 0 and x.is_contiguous(memory_format=torch.channels_last)
    if not paired:
        return F.conv2d(x, weight[:channels], padding=(padding, 0), groups=channels)
    pairs = x.permute(0, 2, 3, 1).view(batch, height, width // 2, 2 * channels).permute(0, 3, 1, 2)
    out = F.conv2d(pairs, weight, padding=(padding, 0), groups=2 * channels)
    return out.permute(0, 2, 3, 1).reshape(batch, out.shape[2], width, channels).permute(0, 3, 1, 2)


def _replication_adjoint(grad: torch.Tensor, r: int) -> torch.Tensor:
    """The gradient of an image from that of its copy with borders replicated by ``r`` pixels: (N, C, H, W)."""
    height, width = grad.shape[2] - 2 * r, grad.shape[3] - 2 * r
    # Each replicated row (column) adds to the edge row (column) it copies; rows first, then columns.
    rows = grad[:, :, r : r + height].clone()
    rows[:, :, 0] += grad[:, :, :r].sum(dim=2)
    rows[:, :, -1] += grad[:, :, r + height :].sum(dim=2)
    image = rows[:, :, :, r : r + width].clone()
    image[:, :, :, 0] += rows[:, :, :, :r].sum(dim=3)
    image[:, :, :, -1] += rows[:, :, :, r + width :].sum(dim=3)
    return image


def filter_channels(images: torch.Tensor, filters: Filters) -> torch.Tensor:
    """The C filter channels of (N, C_in, H, W) linear ``images``, CSF- and feature-filtered: (N, C, H, W).

    Channels-last throughout: oneDNN's depthwise convolutions are several times faster in that layout than
    in NCHW, or than banded GEMMs, forward and backward, and its 1x1 convolutions are the colour GEMMs. The
    borders are replicated once, before the colour map (a per-pixel map commutes with replication), for
    both passes (replicating rows commutes with filtering along them).
    """
    return _FilterPasses.apply(images, filters)
