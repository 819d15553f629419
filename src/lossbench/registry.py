"""The registry of one configuration: the losses and metrics it names, built from it once and passed to what needs it.

The package's own losses and metrics are constants (:data:`lossbench.losses.SPECS`,
:data:`lossbench.metrics.SPECS`). A configuration may add its own (``losses.<name>.module``,
``own_metrics``); :meth:`Registry.from_config` imports and checks them and returns the package's
specs plus those, and nothing is registered in the process behind anyone's back. A workflow script
gets its configuration's registry from :func:`lossbench.pipeline.job.workflow_job`; a command line
builds it from its ``--config``; code without a configuration uses :data:`PACKAGE`.

Example:
    >>> from lossbench.registry import PACKAGE
    >>> PACKAGE.loss_label("lpips_l2")
    'LPIPS+l2'
    >>> list(PACKAGE.metric_rows(["psnr"]))[:3]
    ['l1', 'l2', 'psnr']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lossbench import losses, metrics
from lossbench.core.specs import LossSpec, MetricInfo, MetricSpec, add, lookup, register_own


@dataclass(frozen=True)
class Registry:
    """The losses and metrics one configuration names, by name, in the tables' order (the package's, then its own).

    Attributes:
        losses: Loss name → spec.
        metrics: Metric name → spec.
    """

    # The package's own mappings, not copies: a registry never changes them, and a test that swaps a spec in them
    # swaps it for every registry built after it.
    losses: Mapping[str, LossSpec] = field(default_factory=lambda: losses.SPECS)
    metrics: Mapping[str, MetricSpec] = field(default_factory=lambda: metrics.SPECS)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Registry:
        """The package's specs plus the configuration's own losses (``losses.<name>.module``) and metrics
        (``own_metrics``).

        Args:
            config: A configuration that :func:`lossbench.pipeline.config.validate` accepted, or one being checked
                by it (which turns the errors below into a one-line ConfigError naming the file).

        Raises:
            ValueError: ``losses.<name>.module: <reason>`` or ``own_metrics.<name>.module: <reason>``: the module
                cannot be imported, does not follow the protocol, or takes a name the package already has.
        """
        own_losses, own_metrics = dict(losses.SPECS), dict(metrics.SPECS)
        register_own(
            config["losses"],
            "losses",
            lambda name, settings: losses.from_module(name, settings["module"], settings.get("label")),
            lambda spec: add(own_losses, "loss", spec),
        )
        register_own(
            config.get("own_metrics", {}),
            "own_metrics",
            metrics.from_module,
            lambda spec: add(own_metrics, "metric", spec),
        )
        return cls(own_losses, own_metrics)

    def loss(self, name: str) -> LossSpec:
        """The spec of loss ``name``; an unknown name is a one-line ValueError listing the known ones."""
        return lookup(self.losses, "loss", name)

    def metric(self, name: str) -> MetricSpec:
        """The spec of metric ``name``; an unknown name is a one-line ValueError listing the known ones."""
        return lookup(self.metrics, "metric", name)

    def loss_label(self, name: str, lpips_pretrained: bool = True) -> str:
        """Column, panel or legend label of loss ``name`` (see :meth:`LossSpec.display`)."""
        return self.loss(name).display(lpips_pretrained)

    def loss_tex_label(self, name: str, lpips_pretrained: bool = True) -> str:
        """LaTeX label of loss ``name`` (see :meth:`LossSpec.tex_display`)."""
        return self.loss(name).tex_display(lpips_pretrained)

    def build_loss(self, name: str, params: Mapping[str, Any], channels: int) -> nn.Module:
        """Loss ``name`` built with ``params`` for images of ``channels`` channels (see :meth:`LossSpec.build`)."""
        return self.loss(name).build(params, channels)

    def own_metrics(self) -> dict[str, str]:
        """Metric → the loss that optimises it (:attr:`LossSpec.own_metric`), which the thesis expects to win it."""
        return {spec.own_metric: name for name, spec in self.losses.items() if spec.own_metric is not None}

    def metric_rows(self, computed: Iterable[str]) -> dict[str, MetricInfo]:
        """The rows of a table, ranking or summary: the thesis's metrics in its order, then the other ``computed`` ones
        in theirs; a computed metric this registry lacks is a one-line ValueError."""
        study = metrics.STUDY_METRICS
        return {**study, **{name: self.metric(name).info for name in computed if name not in study}}

    def compute(self, name: str, output: torch.Tensor, target: torch.Tensor, **params: Any) -> torch.Tensor:
        """Metric ``name`` per image, shape (N,), of (N, C, H, W) ``output`` and ``target`` (see
        :func:`lossbench.metrics.compute_spec`)."""
        return metrics.compute_spec(self.metric(name), output, target, **params)


#: The package's own losses and metrics, for code that has no configuration (benches, the package's tests, a command
#: line run without ``--config``).
PACKAGE = Registry()
