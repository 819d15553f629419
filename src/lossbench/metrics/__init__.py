"""The package's metrics: every evaluation metric, computed per image by name from the spec its module declares.

``compute(name, output, target)`` takes (N, C, H, W) tensors with values nominally in [0, 1]
and returns one value per image, shape (N,).

A metric of a user's own comes from the configuration (``own_metrics.<name>``, see
:func:`from_module`) and is computed, tabulated and ranked like the thesis's once its name is in
``metrics``: the configuration's registry holds it (:class:`lossbench.registry.Registry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lossbench.core.specs import (
    MetricInfo,
    MetricSpec,
    Setting,
    declared,
    image_arguments,
    import_object,
    lookup,
)

#: The modules that declare the package's metrics (every :class:`MetricSpec` at their top level),
#: in the tables' row order: the thesis's six first, then the package's others. A new metric module
#: is one line here (docs/extending.md).
MODULES = (
    "lossbench.metrics.pixel",
    "lossbench.metrics.msssim",
    "lossbench.metrics.lpips",
    "lossbench.metrics.flip",
    "lossbench.metrics.ssim",
    "lossbench.metrics.haarpsi",
    "lossbench.metrics.dists",
    "lossbench.metrics.cvvdp",
)

#: The package's metrics, in the order of :data:`MODULES`; a configuration's own join them in its registry
#: (:class:`lossbench.registry.Registry`), never here.
SPECS: dict[str, MetricSpec] = declared(MODULES, MetricSpec)

#: How each metric of the study is shown in the thesis's tables, in its row order.
STUDY_METRICS: dict[str, MetricInfo] = {name: spec.info for name, spec in SPECS.items() if spec.thesis}

__all__ = [
    "MODULES",
    "SPECS",
    "STUDY_METRICS",
    "MetricInfo",
    "compute",
    "compute_spec",
    "from_module",
    "names",
    "spec",
]


@dataclass(frozen=True)
class ModuleMetric:
    """``compute(output, target, **params)`` of a metric that is a ``torch.nn.Module`` class: built once per ``params``,
    in eval mode.

    Attributes:
        factory: The class; its constructor takes ``params`` as keywords, its ``forward(output,
            target)`` returns (N,) values.
    """

    factory: type[nn.Module]
    _built: dict[str, nn.Module] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, output: torch.Tensor, target: torch.Tensor, **params: Any) -> torch.Tensor:
        key = repr(sorted(params.items()))
        if key not in self._built:
            self._built[key] = self.factory(**params).eval()
        return self._built[key](output, target)


@dataclass(frozen=True)
class Configured:
    """The parameters of a user's own metric, the same on every task (``own_metrics.<name>.params``)."""

    params: Mapping[str, Any]

    def __call__(self, setting: Setting) -> dict[str, Any]:
        return dict(self.params)


def from_module(name: str, settings: Mapping[str, Any]) -> MetricSpec:
    """The spec of a user's metric ``name`` from its configuration ``own_metrics.<name>``.

    The protocol: ``settings["module"]`` (``"package.module:attribute"``) is either a function
    ``f(output, target, **params)`` or a ``torch.nn.Module`` class whose constructor takes
    ``params`` as keywords and whose ``forward(output, target)`` computes the metric. Both take
    (N, C, H, W) tensors in [0, 1] (model outputs are clamped to it; the degraded inputs are as
    they are) and return a tensor of N per-image values, shape (N,). It runs without gradients,
    on the CPU, on 1- and 3-channel images (as the tasks have).

    Args:
        name: The metric's name (a table row, a column of the per-image CSVs).
        settings: ``module``, ``direction`` (``higher`` or ``lower`` is better), ``label``,
            ``scale`` (display factor), ``decimals`` and ``params`` (schema defaults filled in).

    Raises:
        ValueError: one line naming the module: not importable, no such attribute, not a function
            or module class, or fewer than two image arguments. Configured ``params`` are checked
            against its keywords with the configuration (:func:`lossbench.pipeline.config.validate`).
    """
    path = settings["module"]
    factory = import_object(path)
    if isinstance(factory, type) and issubclass(factory, nn.Module):
        compute, called = ModuleMetric(factory), f"{path}.forward"
    elif callable(factory) and not isinstance(factory, type):
        compute, called = factory, path
    else:
        raise ValueError(
            f"{path} is neither a function nor a torch.nn.Module subclass (a metric is f(output, target) returning one"
            " value per image)"
        )
    if image_arguments(factory) < 2:
        raise ValueError(f"{called} takes {image_arguments(factory)} image argument(s), expected (output, target)")
    info = MetricInfo(
        settings.get("label", name), settings["direction"] == "higher", settings["scale"], settings["decimals"]
    )
    # The configuration does not say what identical images score: best=None, nothing to check.
    return MetricSpec(
        name,
        compute,
        info,
        defaults=Configured(dict(settings["params"])),
        thesis=False,
        best=None,
        reference=f"own metric, {path} (own_metrics.{name})",
    )


def names() -> list[str]:
    """Names of the package's metrics."""
    return list(SPECS)


def spec(name: str) -> MetricSpec:
    """The spec of the package's metric ``name``; an unknown name is a one-line ValueError listing the known ones."""
    return lookup(SPECS, "metric", name)


def compute(name: str, output: torch.Tensor, target: torch.Tensor, **params) -> torch.Tensor:
    """Compute the package's metric ``name`` per image (see :func:`compute_spec`)."""
    return compute_spec(spec(name), output, target, **params)


@torch.no_grad()
def compute_spec(metric: MetricSpec, output: torch.Tensor, target: torch.Tensor, **params) -> torch.Tensor:
    """Compute ``metric`` per image.

    Args:
        metric: The metric's spec (:func:`spec`, or a configuration's registry's).
        output: Restored images, (N, C, H, W), C in {1, 3}, nominally in [0, 1].
        target: Reference images of the same shape.
        **params: Metric options (for example FLIP's grayscale mode).

    Returns:
        Tensor of shape (N,).

    Raises:
        ValueError: the metric returned something else than N values (one line).
    """
    values = metric.compute(output, target, **params)
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (output.shape[0],):
        got = f"shape {tuple(values.shape)}" if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(
            f"metric {metric.name!r} returned {got} for {output.shape[0]} image(s), expected a tensor of shape"
            f" ({output.shape[0]},)"
        )
    return values
