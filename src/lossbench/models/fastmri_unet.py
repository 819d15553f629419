"""fastMRI's U-net (model.name: fastmri_unet): ``fastmri.models.Unet``, the baseline fastMRI users know.

Zbontar et al. 2018 (arXiv:1811.08839): per level two 3×3 convolutions, each followed by instance
normalisation, LeakyReLU (slope 0.2) and dropout; 2×2 average pooling down, 2×2 transposed
convolutions up, skip connections, a final 1×1 convolution; no global residual. Its keys are
fastMRI's own argument names; ``in_chans`` and ``out_chans`` are the task's channel count (3 for
RGB denoising, 1 for MRI). Unlike fastMRI's ``UnetDataTransform``, which normalises each slice
to zero mean and unit variance, lossbench feeds the images as every model gets them, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastmri.models import Unet

from lossbench.models.spec import ModelSpec


def _build(channels: int, **params: Any) -> Unet:
    return Unet(in_chans=channels, out_chans=channels, **params)


def _parameters(params: Mapping[str, Any], channels: int) -> int:
    width, depth = params["chans"], params["num_pool_layers"]
    levels = [width * 2**level for level in range(depth + 1)]

    def block(inputs: int, outputs: int) -> int:  # two bias-free 3×3 convolutions; the instance norms have no weights
        return 9 * (inputs * outputs + outputs * outputs)

    count = block(channels, levels[0]) + block(levels[depth - 1], levels[depth]) + levels[0] * channels + channels
    count += sum(block(levels[level - 1], levels[level]) for level in range(1, depth))
    count += sum(
        4 * levels[level + 1] * levels[level] + block(2 * levels[level], levels[level]) for level in range(depth)
    )
    return count


def _activations(params: Mapping[str, Any], channels: int, side: int) -> int:
    # Per level about sixteen feature maps: two blocks of convolution, norm and dropout (the LeakyReLUs
    # work in place), the transposed convolution's output and its norm, and the concatenation; six at the bottleneck.
    width, depth = params["chans"], params["num_pool_layers"]
    return (
        sum(16 * width * 2**level * (side // 2**level) ** 2 for level in range(depth))
        + 6 * width * 2**depth * (side // 2**depth) ** 2
    )


SPEC = ModelSpec(
    name="fastmri_unet",
    factory=_build,
    label="fastMRI U-net",
    schema={
        "chans": {
            "type": "integer",
            "minimum": 1,
            "default": 32,
            "description": "Output channels of the first convolution, doubling per level (fastMRI's default 32).",
        },
        "num_pool_layers": {
            "type": "integer",
            "minimum": 1,
            "default": 4,
            "description": (
                "Down- and up-sampling layers (fastMRI's default 4); 2**num_pool_layers may not exceed any task's crop"
                " (checked)."
            ),
        },
        "drop_prob": {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.0,
            "description": "Dropout probability after every convolution (fastMRI's default 0).",
        },
    },
    width_key="chans",
    depth_key="num_pool_layers",
    activations=_activations,
    parameters=_parameters,
)
