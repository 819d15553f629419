"""ColorVideoVDP (Mantiuk, Hanji, Ashraf, Asano & Chapiro 2024, ACM Transactions on Graphics 43(4), SIGGRAPH), per
image, in JOD: the official ``pycvvdp`` of the optional extra ``cvvdp`` (``pip install -e '.[cvvdp]'``, cvvdp 0.5.7).

ColorVideoVDP predicts quality in just-objectionable differences (JOD), the unit of the user study: 10 for
an image identical to its reference, one JOD less for each step at which 75 % of observers would prefer
the reference. It models the display and the viewing distance, as FLIP does, and it sees the same screen:

- **Geometry**: the pixels per degree of ``evaluation.flip`` (:func:`lossbench.flip.setting_ppd`, FLIP's
  own number, 67.02 at the thesis's 70 cm from a 70 cm wide 3840-pixel monitor), passed to pycvvdp as a
  fixed-ppd :class:`pycvvdp.vvdp_display_geometry`; cvvdp's own ``standard_4k`` geometry would see 75.4.
- **Photometry**: cvvdp's ``standard_4k`` display model (:data:`DISPLAY`): a 4K SDR monitor of 200 cd/m²
  peak, contrast 1000:1, sRGB transfer, under 250 lux of office light. FLIP models no luminance.

Values are display-encoded (sRGB) in [0, 1]; values outside are clipped, as the screen clips them. A
grayscale image (C = 1, the MRI tasks) is replicated to RGB, a gray picture on the same screen, as the
user study shows it: pycvvdp's own single-channel input is read as achromatic contrast only and scores
the same pair differently (9.63 against 7.99 JOD on a noisy 64² pair).

It runs offline: the parameters ship in the wheel, and the metric never reaches the network (the
package's downloading models, ``cvvdp_ml_*``, are not used). Without the extra, computing it and a
configuration that lists it in ``metrics`` stop with one line, :func:`missing_extra`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import re
from collections.abc import Mapping
from typing import Any

import torch

from lossbench.core.checks import check_image_pair
from lossbench.core.specs import MetricInfo, MetricSpec, Setting
from lossbench.flip import DEFAULT_PPD, setting_ppd

#: The optional extra (pyproject.toml) that installs the official package, and its import name.
EXTRA = "cvvdp"
PACKAGE = "pycvvdp"
#: The version the extra pins and the reference values of tests/test_cvvdp.py were computed with.
VERSION = "0.5.7"
#: cvvdp's display model whose photometry the metric uses (its geometry is FLIP's, see the module's docstring).
DISPLAY = "standard_4k"
#: cvvdp's prediction for an image identical to its reference, its maximum.
BEST = 10.0
#: The smallest side pycvvdp takes (a single row or column fails inside its Laplacian pyramid).
MIN_SIDE = 2

#: One pycvvdp metric object per (pixels per degree, device): building one reads its parameter files.
_BUILT: dict[tuple[float, str], Any] = {}


def missing_extra(reason: str | None = None) -> str:
    """The one line that says the extra is absent and how to install it; ``reason``: why pycvvdp, installed, failed
    to import (one of its own requirements missing), None where pycvvdp itself is absent."""
    why = f"{PACKAGE} is not installed" if reason is None else f"{PACKAGE} cannot be imported: {reason}"
    return f"metric 'cvvdp' needs the optional extra ColorVideoVDP: pip install -e '.[{EXTRA}]' ({why})"


def _module() -> Any:
    """pycvvdp, imported on first use (two seconds, and a package not every installation has)."""
    # pycvvdp imports torch.utils.benchmark, whose cpp_extension warns "No CUDA runtime is found" on every CPU-only
    # host: noise about C++ extensions lossbench never builds.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return importlib.import_module(PACKAGE)
    except ImportError as error:
        absent = isinstance(error, ModuleNotFoundError) and error.name == PACKAGE
        reason = None if absent else (str(error).splitlines() or [type(error).__name__])[0]
        raise ImportError(missing_extra(reason)) from None
    finally:
        logger.setLevel(level)


def unavailable() -> str | None:
    """Why the metric cannot run here, one line, or None: pycvvdp or a distribution its wheel requires is not
    installed.

    Found without importing pycvvdp, which takes two seconds and every configuration check asks this (each
    Snakemake invocation, each cluster job); an installed package that still fails to import says so in
    :func:`_module`'s line when the metric is computed.
    """
    try:
        found = importlib.util.find_spec(PACKAGE) is not None
    except ImportError:
        found = False
    if not found:
        return missing_extra()
    try:
        requirements = importlib.metadata.requires(EXTRA) or []
    except importlib.metadata.PackageNotFoundError:  # pycvvdp from a source tree: nothing recorded to check
        requirements = []
    for requirement in requirements:
        if "extra ==" in requirement:  # an extra of cvvdp's own (its CUDA tools), not needed here
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement)[0]
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return missing_extra(f"its requirement {name} is not installed")
    return None


def official(ppd: float, device: torch.device | str = "cpu") -> Any:
    """The official ``pycvvdp.cvvdp`` object that computes the metric: :data:`DISPLAY`'s photometry, seen at
    ``ppd`` pixels per degree (built once per ``ppd`` and device)."""
    key = (float(ppd), str(device))
    if key not in _BUILT:
        pycvvdp = _module()
        # The photometry is the named display's; the geometry keeps its resolution but its ppd is fixed.
        resolution = pycvvdp.vvdp_display_geometry.load(DISPLAY, []).resolution
        geometry = pycvvdp.vvdp_display_geometry(resolution, ppd=float(ppd))
        _BUILT[key] = pycvvdp.cvvdp(
            display_name=DISPLAY, display_geometry=geometry, quiet=True, device=torch.device(device)
        )
    return _BUILT[key]


def _rgb(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 1]: clipped as the screen clips, a grayscale image shown gray."""
    images = images.detach().to(torch.float32).clamp(0.0, 1.0)
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images.contiguous()


@torch.no_grad()
def cvvdp(output: torch.Tensor, target: torch.Tensor, ppd: float = DEFAULT_PPD) -> torch.Tensor:
    """ColorVideoVDP of each image against its reference, in JOD.

    Args:
        output: Test images, (N, C, H, W), C in {1, 3}, display-encoded values nominally in [0, 1].
        target: Reference images of the same shape.
        ppd: Pixels per degree of the viewing geometry (``evaluation.flip``'s, as FLIP's).

    Returns:
        (N,) float32 JOD values, at most 10 (identical images), on the images' device.

    Raises:
        ValueError: shapes differ, C is not 1 or 3, or a side is below :data:`MIN_SIDE` (one line).
        ImportError: pycvvdp is not installed (the one line of :func:`missing_extra`).
    """
    check_image_pair(output, target, "cvvdp")
    if min(output.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"cvvdp: image of {tuple(output.shape[-2:])} pixels, expected sides of at least {MIN_SIDE}")
    if output.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float32, device=output.device)
    metric = official(ppd, output.device)
    quality, _ = metric.predict(_rgb(output), _rgb(target), dim_order="BCHW")
    return quality.reshape(output.shape[0]).to(torch.float32)


def _defaults(setting: Setting) -> dict[str, Any]:
    return {"ppd": setting_ppd(setting)}


def viewing_conditions(params: Mapping[str, Any]) -> str:
    """The screen ColorVideoVDP's values depend on, as a table's footnote states it."""
    return (
        f"ColorVideoVDP seen at {params['ppd']:.1f} pixels per degree (evaluation.flip, as FLIP) on cvvdp's"
        f" {DISPLAY} display (200 cd/m², 1000:1, 250 lux)."
    )


def _too_small(side: int) -> str | None:
    if side < MIN_SIDE:
        return f"the cvvdp metric's Laplacian pyramid (the side must be at least {MIN_SIDE})"
    return None


METRIC = MetricSpec(
    "cvvdp",
    cvvdp,
    MetricInfo("ColorVideoVDP", higher_is_better=True, decimals=2, unit="JOD"),
    defaults=_defaults,
    too_small=_too_small,
    thesis=False,
    conditions=viewing_conditions,
    best=BEST,
    unavailable=unavailable,
    reference=(
        "Mantiuk, Hanji, Ashraf, Asano & Chapiro 2024, ColorVideoVDP: a visual difference predictor for image, video"
        f" and display distortions (SIGGRAPH); the official {PACKAGE} {VERSION}, optional extra:"
        f" pip install -e '.[{EXTRA}]'"
    ),
)
