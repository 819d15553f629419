"""The contract of every registered loss and metric, one test per spec and check.

The tests are parametrised over the registries as they stand when pytest collects them
(``lossbench.losses.SPECS``, ``lossbench.metrics.SPECS``): a loss or metric added to the package as
docs/extending.md shows is checked without editing this file. ``tests/test_extending_docs.py`` runs
the same checks (:func:`check_loss`, :func:`check_metric`) on the examples of docs/extending.md,
those added by configuration included.

A loss (:class:`lossbench.core.specs.LossSpec`) is a ``torch.nn.Module`` built by its spec from
keyword parameters, among them ``reduction`` (``mean``, ``sum`` or ``none``, one value per image);
``forward(output, target)`` takes (N, C, H, W) floating-point tensors, C in the spec's channels,
nominally in [0, 1], and returns a scalar with finite gradients, whose value on identical images
is the spec's ``minimum``. A metric (:class:`lossbench.core.specs.MetricSpec`) is ``compute(output,
target, **params)`` on the same tensors, returning one value per image, shape (N,), the spec's
``best`` for identical images and worse with more noise in its declared direction. Both refuse
other channel counts in one line, run on the CPU in float32 and float64, and every metric is
printed by ``python -m lossbench.metrics --json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import io
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lossbench import losses, metrics
from lossbench.core.checks import REDUCTIONS
from lossbench.core.specs import Setting, keywords
from lossbench.data.images import read_image
from lossbench.pipeline.config import validate

from conftest import TINY_CONFIG

#: Images of the checks: two per batch (per-image behaviour needs more than one), 64 × 64 pixels,
#: which every spec's portable parameters take (MS-SSIM then runs 3 of its 5 scales) and which
#: keeps LPIPS and FLIP quick.
BATCH, SIDE = 2, 64

#: A registry name: a column of the per-image CSVs and a key of the configuration.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Tolerance between equal quantities computed in another order or precision (float32 sums).
CLOSE = {"rtol": 1e-5, "atol": 1e-6}

#: Tolerance between a float64 pair's value and the same pair's in float32.
FLOAT64_CLOSE = {"rtol": 1e-3, "atol": 1e-5}


def image_pair(
    channels: int, noise: float = 0.1, dtype: torch.dtype = torch.float32, batch: int = BATCH, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, target): ``batch`` random images in [0, 1] and a noisy copy clamped to it, the same in any ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, channels, SIDE, SIDE, generator=generator, dtype=torch.float64)
    output = (target + noise * torch.randn(target.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    return output.to(dtype), target.to(dtype)


def image_names(function) -> list[str]:
    """The names of the first two positional parameters of ``function`` (after ``self`` for a bound method)."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        parameter.name for parameter in inspect.signature(function).parameters.values() if parameter.kind in positional
    ][:2]


# Losses.


def build_loss(name: str, channels: int, **extra) -> torch.nn.Module:
    """Loss ``name`` as a task of ``channels`` channels builds it, portable (tiny images, no weights), + ``extra``."""
    spec = losses.spec(name)
    return spec.build({**spec.params(Setting(channels), spec.portable_params), **extra}, channels)


def loss_spec_is_well_formed(name: str) -> None:
    """Name, labels, channels and minimum well formed; the constructor takes ``reduction`` and what the spec passes."""
    spec = losses.spec(name)
    assert spec.name == name and NAME.fullmatch(name), f"loss name {name!r}: expected letters, digits and underscores"
    assert isinstance(spec.label, str) and spec.label.strip() and "\n" not in spec.label
    assert isinstance(spec.tex_display(), str) and spec.tex_display().strip()
    assert spec.channels and set(spec.channels) <= {
        1,
        3,
    }, f"channels {spec.channels}: expected a non-empty tuple of 1 and/or 3"
    assert spec.minimum is None or not math.isnan(spec.minimum)
    assert spec.own_metric is None or spec.own_metric in metrics.names(), (
        f"own_metric {spec.own_metric!r} is not a registered metric"
    )
    assert spec.check_config(spec.portable_params) is None
    accepted = keywords(spec.factory)
    if accepted is not None:  # None: the constructor takes any keyword
        assert "reduction" in accepted, (
            f"{name}: the constructor takes no reduction= (expected one of {', '.join(REDUCTIONS)})"
        )
        for channels in spec.channels:
            passed = {
                *spec.params(Setting(channels), spec.portable_params),
                *([spec.channel_param] if spec.channel_param else []),
            }
            assert passed <= set(accepted), (
                f"{name}: the spec passes {sorted(passed - set(accepted))}, which the constructor does not take"
            )
    # The optimiser trains a loss's parameters exactly when the spec says it learns.
    assert bool(list(build_loss(name, spec.channels[-1]).parameters())) == spec.learnable


def loss_takes_output_then_target(name: str) -> None:
    """``forward(output, target)``: the network's output first, the reference second."""
    spec = losses.spec(name)
    assert image_names(build_loss(name, spec.channels[-1]).forward) == ["output", "target"]


def loss_reduces_as_reduction_says(name: str) -> None:
    """``none``: each image's loss, (N,); ``sum``: their sum; ``mean``: the default bit for bit; others refused."""
    for channels in losses.spec(name).channels:
        output, target = image_pair(channels)
        default = build_loss(name, channels)(output, target).detach()
        per_image = build_loss(name, channels, reduction="none")(output, target).detach()
        assert per_image.shape == (BATCH,) and not torch.equal(per_image[0], per_image[1])
        singles = torch.stack(
            [build_loss(name, channels)(output[i : i + 1], target[i : i + 1]).detach() for i in range(BATCH)]
        )
        torch.testing.assert_close(per_image, singles, **CLOSE)
        torch.testing.assert_close(
            build_loss(name, channels, reduction="sum")(output, target).detach(), per_image.sum(), **CLOSE
        )
        torch.testing.assert_close(per_image.mean(), default, **CLOSE)
        # 'mean', the default, is computed as it always was: training runs stay bit for bit the same.
        assert torch.equal(build_loss(name, channels, reduction="mean")(output, target).detach(), default)
        # Each image's loss depends on that image only.
        output.requires_grad_()
        build_loss(name, channels, reduction="none")(output, target)[0].backward()
        assert output.grad[0].abs().sum() > 0 and torch.count_nonzero(output.grad[1:]) == 0
    with pytest.raises(ValueError, match=r"^[\w+]+: unknown reduction 'avg', expected one of 'mean', 'sum', 'none'$"):
        build_loss(name, losses.spec(name).channels[-1], reduction="avg")


def loss_has_finite_gradients(name: str) -> None:
    """A finite scalar, finite nonzero gradients in ``output``; finite ones at identical images (no sqrt(0), 0/0)."""
    for channels in losses.spec(name).channels:
        output, target = image_pair(channels)
        output.requires_grad_()
        value = build_loss(name, channels)(output, target)
        assert value.ndim == 0 and torch.isfinite(value)
        value.backward()
        assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
        identical = target.clone().requires_grad_()
        build_loss(name, channels)(identical, target).backward()
        assert torch.isfinite(identical.grad).all()


def loss_of_identical_images_is_its_minimum(name: str) -> None:
    """Identical images cost the spec's ``minimum`` (where it has one), and a noisy pair costs more."""
    spec = losses.spec(name)
    if spec.minimum is None:
        return
    for channels in spec.channels:
        output, target = image_pair(channels)
        loss_fn = build_loss(name, channels)
        torch.testing.assert_close(
            loss_fn(target.clone(), target).detach().double(),
            torch.tensor(spec.minimum, dtype=torch.float64),
            rtol=0,
            atol=1e-5,
        )
        assert float(loss_fn(output, target)) > spec.minimum


def loss_refuses_other_channel_counts(name: str) -> None:
    """Two-channel images are a one-line ValueError naming the channels."""
    output, target = image_pair(2)
    with pytest.raises(ValueError, match="channel") as refusal:
        build_loss(name, losses.spec(name).channels[-1])(output, target)
    assert "\n" not in str(refusal.value)


def loss_runs_in_float32_and_float64(name: str) -> None:
    """On the CPU, float64 images give the float32 images' loss (within float32's precision)."""
    for channels in losses.spec(name).channels:
        single, double = (
            build_loss(name, channels)(*image_pair(channels, dtype=dtype)).detach()
            for dtype in (torch.float32, torch.float64)
        )
        assert torch.isfinite(double)
        torch.testing.assert_close(double.double(), single.double(), **FLOAT64_CLOSE)


#: Every check of a loss, in the order :func:`check_loss` runs them.
LOSS_CHECKS = (
    loss_spec_is_well_formed,
    loss_takes_output_then_target,
    loss_reduces_as_reduction_says,
    loss_has_finite_gradients,
    loss_of_identical_images_is_its_minimum,
    loss_refuses_other_channel_counts,
    loss_runs_in_float32_and_float64,
)


def check_loss(name: str) -> None:
    """Every check of :data:`LOSS_CHECKS` on the registered loss ``name``."""
    for check in LOSS_CHECKS:
        check(name)


# Metrics.


def metric_params(name: str, channels: int) -> dict:
    """Parameters of metric ``name`` on a task of ``channels`` channels, made portable (no weights fetched)."""
    spec = metrics.spec(name)
    return {**spec.params(Setting(channels)), **spec.portable_params}


@functools.cache
def default_evaluation() -> dict:
    """The configuration's ``evaluation`` section with nothing configured: the schema's defaults."""
    with open(TINY_CONFIG) as handle:
        config = yaml.safe_load(handle)
    config.pop("evaluation", None)
    return validate(config, "config_tiny.yaml", require_data=False)["evaluation"]


def metric_spec_is_well_formed(name: str) -> None:
    """Name, labels, direction, unit, scale, channels, best value, reference well formed; compute takes what the spec
    passes."""
    spec = metrics.spec(name)
    info = spec.info
    assert spec.name == name and NAME.fullmatch(name), f"metric name {name!r}: expected letters, digits and underscores"
    assert isinstance(info.label, str) and info.label.strip() and "\n" not in info.label
    assert isinstance(info.tex_label, str) and info.tex_label.strip()
    assert isinstance(info.higher_is_better, bool)
    assert info.unit is None or (isinstance(info.unit, str) and info.unit.strip()), (
        f"unit {info.unit!r}: expected None or a word such as 'dB'"
    )
    assert math.isfinite(info.scale) and info.scale > 0 and isinstance(info.decimals, int) and info.decimals >= 0
    assert spec.channels and set(spec.channels) <= {
        1,
        3,
    }, f"channels {spec.channels}: expected a non-empty tuple of 1 and/or 3"
    assert spec.best is None or not math.isnan(spec.best)
    assert isinstance(spec.thesis, bool) and isinstance(spec.differentiable, bool)
    assert isinstance(spec.reference, str) and spec.reference.strip() and "\n" not in spec.reference, (
        f"{name}: reference {spec.reference!r}: expected one line saying where the metric is defined"
    )
    assert spec.check_config(default_evaluation()) is None, f"{name}: refuses the default evaluation settings"
    accepted = keywords(spec.compute)
    for channels in spec.channels:
        params = metric_params(name, channels)
        if accepted is not None:  # None: compute takes any keyword
            assert set(params) <= set(accepted), (
                f"{name}: the spec passes {sorted(set(params) - set(accepted))}, which compute does not take"
            )
        conditions = spec.conditions(params)
        assert conditions is None or (isinstance(conditions, str) and "\n" not in conditions)
    reason = spec.too_small(SIDE)
    assert reason is None or (isinstance(reason, str) and reason.strip())


def metric_takes_output_then_target(name: str) -> None:
    """``compute(output, target, ...)``: the network's output first, the reference second."""
    assert image_names(metrics.spec(name).compute) == ["output", "target"]


def metric_gives_one_value_per_image(name: str) -> None:
    """``metrics.compute`` gives (N,) finite values, each image's its own, whatever the batch."""
    for channels in metrics.spec(name).channels:
        output, target = image_pair(channels)
        params = metric_params(name, channels)
        values = metrics.compute(name, output, target, **params)
        assert values.shape == (BATCH,) and torch.isfinite(values).all()
        singles = torch.cat(
            [metrics.compute(name, output[i : i + 1], target[i : i + 1], **params) for i in range(BATCH)]
        )
        torch.testing.assert_close(values.double(), singles.double(), **CLOSE)


def metric_of_identical_images_is_its_best(name: str) -> None:
    """Identical images score the spec's ``best`` (where it has one); more noise scores worse in its direction."""
    spec = metrics.spec(name)
    for channels in spec.channels:
        params = metric_params(name, channels)
        if spec.best is not None:
            _, target = image_pair(channels)
            values = metrics.compute(name, target.clone(), target, **params).double()
            torch.testing.assert_close(
                values, torch.full((BATCH,), spec.best, dtype=torch.float64), rtol=1e-5, atol=1e-5
            )
        slight = metrics.compute(name, *image_pair(channels, noise=0.02), **params)
        strong = metrics.compute(name, *image_pair(channels, noise=0.2), **params)
        assert ((strong < slight) if spec.info.higher_is_better else (strong > slight)).all(), (
            f"{name}: more noise is not worse, {'higher' if spec.info.higher_is_better else 'lower'} being better"
        )


def metric_refuses_other_channel_counts(name: str) -> None:
    """Two-channel images are a one-line ValueError naming the channels."""
    output, target = image_pair(2)
    with pytest.raises(ValueError, match="channel") as refusal:
        metrics.compute(name, output, target, **metric_params(name, metrics.spec(name).channels[-1]))
    assert "\n" not in str(refusal.value)


def metric_runs_in_float32_and_float64(name: str) -> None:
    """On the CPU, float64 images give the float32 images' values (within float32's precision)."""
    for channels in metrics.spec(name).channels:
        params = metric_params(name, channels)
        single, double = (
            metrics.compute(name, *image_pair(channels, dtype=dtype), **params)
            for dtype in (torch.float32, torch.float64)
        )
        assert torch.isfinite(double).all()
        torch.testing.assert_close(double.double(), single.double(), **FLOAT64_CLOSE)


def metric_has_finite_gradients_if_differentiable(name: str) -> None:
    """A metric whose spec says it is differentiable gives finite, nonzero gradients in ``output``."""
    spec = metrics.spec(name)
    if not spec.differentiable:
        return
    for channels in spec.channels:
        output, target = image_pair(channels)
        output.requires_grad_()
        spec.compute(output, target, **metric_params(name, channels)).sum().backward()
        assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


def metric_is_a_row_of_the_json_cli(name: str) -> None:
    """``python -m lossbench.metrics --metric NAME --json``: its value of two files, unit, direction and ppd."""
    from lossbench.metrics.__main__ import main

    spec = metrics.spec(name)
    gray = 3 not in spec.channels
    output, target = image_pair(3)
    with tempfile.TemporaryDirectory() as folder:
        paths = [str(Path(folder) / f"{role}.png") for role in ("reference", "test")]
        for path, image in zip(paths, (target, output)):
            Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
        # The CLI takes the spec's task defaults; the portable parameters join them for this run only.
        portable = dataclasses.replace(
            spec, defaults=lambda setting: {**spec.defaults(setting), **spec.portable_params}
        )
        printed = io.StringIO()
        with _registered(portable), contextlib.redirect_stdout(printed):
            main(["--metric", name, "--json", *(["--gray"] if gray else []), *paths])
        record = json.loads(printed.getvalue())
        images = [
            torch.from_numpy(
                np.ascontiguousarray(read_image(path, gray=gray)[None] if gray else read_image(path).transpose(2, 0, 1))
            )[None]
            for path in paths
        ]
    params = portable.params(Setting(1 if gray else 3))
    expected = float(metrics.compute(name, images[1], images[0], **params)[0])
    assert record == {
        "metric": name,
        "value": pytest.approx(expected, rel=1e-6, abs=1e-9),
        "unit": spec.info.unit,
        "better": "higher" if spec.info.higher_is_better else "lower",
        "ppd": params.get("ppd"),
        "reference": paths[0],
        "test": paths[1],
    }


@contextlib.contextmanager
def _registered(spec):
    """``spec`` in the metric registry in place of its namesake, for the duration of the block."""
    previous = metrics.SPECS[spec.name]
    metrics.SPECS[spec.name] = spec
    try:
        yield
    finally:
        metrics.SPECS[spec.name] = previous


#: Every check of a metric, in the order :func:`check_metric` runs them.
METRIC_CHECKS = (
    metric_spec_is_well_formed,
    metric_takes_output_then_target,
    metric_gives_one_value_per_image,
    metric_of_identical_images_is_its_best,
    metric_refuses_other_channel_counts,
    metric_runs_in_float32_and_float64,
    metric_has_finite_gradients_if_differentiable,
    metric_is_a_row_of_the_json_cli,
)


def check_metric(name: str) -> None:
    """Every check of :data:`METRIC_CHECKS` on the registered metric ``name``."""
    for check in METRIC_CHECKS:
        check(name)


@pytest.mark.parametrize("check", LOSS_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("name", losses.names())
def test_loss(name, check):
    check(name)


@pytest.mark.parametrize("check", METRIC_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("name", metrics.names())
def test_metric(name, check):
    check(name)
