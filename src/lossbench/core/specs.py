"""Specs: what the rest of the project needs to know about a loss or a metric, declared beside it.

Each loss and metric module declares its spec; :mod:`lossbench.losses` and :mod:`lossbench.metrics`
collect them from the modules they list (:func:`declared`). Tables, figures, the user study,
configuration checks, evaluation, training, tests and benches read names, labels, directions and
task-dependent defaults from the specs, so a new loss or metric is one module plus its name in a
registry's ``MODULES``, and no name-specific branch lives elsewhere; ``tests/test_contract.py``
checks every registered one (docs/extending.md).
A user's own loss or metric from the configuration (``losses.<name>.module``, ``own_metrics``) is
imported, checked and registered by the helpers here, the same for both (:func:`register_own`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

Spec = TypeVar("Spec")


def lookup(registry: Mapping[str, Spec], kind: str, name: str) -> Spec:
    """The spec of ``name`` in ``registry`` (of losses or metrics: ``kind``).

    Raises:
        ValueError: unknown name (one line listing the known ones).
    """
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}: expected one of {', '.join(registry)}")
    return registry[name]


def add(registry: dict[str, Spec], kind: str, spec: Spec) -> None:
    """Add ``spec`` (of a loss or metric: ``kind``) to ``registry``; the same spec again changes nothing.

    Raises:
        ValueError: ``spec.name`` is already a different one.
    """
    if spec.name in registry and registry[spec.name] != spec:
        raise ValueError(f"{kind} {spec.name!r} is already registered")
    registry[spec.name] = spec


def declared(modules: Iterable[str], kind: type[Spec]) -> dict[str, Spec]:
    """Every spec of class ``kind`` that the ``modules`` define at their top level, by name.

    The order is that of ``modules``, then that of the definitions in each module (a module's
    globals keep it), so that a registry lists its specs in a fixed order: the tables' columns and
    rows follow it. A spec that a module imports from another is among its globals too: the first
    listed module that has it places it.

    Args:
        modules: Dotted module names (``"lossbench.losses.pixel"``).
        kind: :class:`LossSpec` or :class:`MetricSpec`.

    Raises:
        ValueError: two modules define different specs of one name.
    """
    registry: dict[str, Spec] = {}
    for module_name in modules:
        for value in vars(importlib.import_module(module_name)).values():
            if isinstance(value, kind):
                add(registry, kind.__name__, value)
    return registry


def import_object(path: str) -> Any:
    """The object at ``path`` (``"package.module:attribute"``), a user's own loss or metric.

    Raises:
        ValueError: one line naming the module: it cannot be imported (with the first line of the
            error), or it has no such attribute.
    """
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # a user's module can fail in any way while it is imported
        raise ValueError(
            f"cannot import {module_name!r} ({type(error).__name__}:"
            f" {str(error).splitlines()[0] if str(error) else 'no message'})"
        ) from None
    found = getattr(module, attribute, None)
    if found is None:
        raise ValueError(f"module {module_name!r} has no {attribute!r}")
    return found


def image_arguments(factory: Callable[..., Any]) -> int:
    """How many positional arguments a call of ``factory`` takes: a class's ``forward`` (after ``self``), else the
    function's own."""
    function, skipped = (factory.forward, 1) if isinstance(factory, type) else (factory, 0)
    parameters = list(inspect.signature(function).parameters.values())[skipped:]
    return sum(
        parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD) for parameter in parameters
    )


def keywords(factory: Callable[..., Any]) -> list[str] | None:
    """The keyword parameters ``factory`` takes: a ``torch.nn.Module`` class's constructor's, else a function's after
    its two image arguments (None: any)."""
    if isinstance(factory, type):
        for klass in factory.__mro__:
            if klass is nn.Module:
                return []  # nn.Module's constructor takes no arguments
            if "__init__" in vars(klass):
                function, skipped = klass.__init__, 1
                break
        else:
            return None
    else:
        function, skipped = factory, 2
    parameters = list(inspect.signature(function).parameters.values())[skipped:]
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return [
        parameter.name
        for parameter in parameters
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]


def register_own(
    section: Mapping[str, Mapping[str, Any]],
    key: str,
    make: Callable[[str, Mapping[str, Any]], Any],
    register: Callable[[Any], None],
) -> None:
    """Register the spec ``make(name, settings)`` of every entry of a configuration section that names a ``module``.

    Args:
        section: The section (``losses``, ``own_metrics``): name → settings.
        key: Its key, for messages.
        make: The spec of one entry; ValueError (one line) when its module does not fit.
        register: Adds a spec to its registry; ValueError when the name is taken.

    Raises:
        ValueError: ``<key>.<name>.module: <reason>``.
    """
    for name, settings in section.items():
        if "module" in settings:
            try:
                register(make(name, settings))
            except ValueError as error:
                raise ValueError(f"{key}.{name}.module: {error}") from None


def tex_escape(text: str) -> str:
    """Plain label text made safe for LaTeX (±, ·, arrows, underscores, percent signs)."""
    return (
        text.replace("±", r"$\pm$")
        .replace("·", r"$\cdot$")
        .replace("↑", r"$\uparrow$")
        .replace("↓", r"$\downarrow$")
        .replace("_", r"\_")
        .replace("%", r"\%")
    )


@dataclass(frozen=True)
class Setting:
    """The task a loss or metric is used for, as its task-dependent defaults see it.

    Attributes:
        channels: Image channels of the task, 1 (grayscale MRI) or 3 (RGB).
        evaluation: The configuration's ``evaluation`` section (FLIP viewing conditions and
            grayscale mode, LPIPS trunk and weights); empty for the built-in defaults.
    """

    channels: int
    evaluation: Mapping[str, Any] = field(default_factory=dict)


def _no_defaults(setting: Setting) -> dict[str, Any]:
    return {}


def _valid(params: Mapping[str, Any]) -> str | None:
    return None


def _any_size(side: int) -> str | None:
    return None


def _no_conditions(params: Mapping[str, Any]) -> str | None:
    return None


def _any_evaluation(evaluation: Mapping[str, Any]) -> str | None:
    return None


def _installed() -> str | None:
    return None


@dataclass(frozen=True)
class LossSpec:
    """A training loss.

    Attributes:
        name: Registry and configuration name (``losses.<name>``).
        factory: Builds the loss module from keyword parameters; ``forward(output, target)``
            takes (N, C, H, W) tensors nominally in [0, 1] and returns a scalar.
        label: Column, panel and legend label.
        tex: LaTeX label; None: :func:`tex_escape` of ``label``.
        channels: Channel counts C the loss accepts.
        learnable: Whether the loss has parameters the optimiser trains with the network.
        channel_param: Keyword that receives the task's channel count (per-channel parameters).
        defaults: Task-dependent parameter defaults; configured ``params`` override them.
        portable_params: Parameters that let the loss run on any image size without fetching
            weights, for tests and benchmarks.
        thesis: One of the thesis's six losses (in its tables by default); False: opt-in.
        untrained_trunk_note: Appended to the label when the LPIPS trunk was untrained (losses
            built on LPIPS); empty for the others.
        own_metric: The metric the loss optimises, which the thesis expects it to win (summary).
        training_notes: What is known of how the loss trains, where that explains a miss of its
            own metric, with a link to the evidence (the summary cites it at a miss); empty: none.
        check_params: Why configured ``params`` are invalid, in one line from the key on
            (``weights.l3: ...``), or None; :meth:`check_config` asks it when the configuration is
            loaded. The pipeline checks what is the same for every loss itself: each key of ``params``
            a keyword of ``factory``, a reduction that gives training a scalar.
        minimum: The loss of identical images, its least value (0 for an error); None where it
            has none fixed (a log-density's depends on its learnt scale). Checked by the contract
            test (tests/test_contract.py).
    """

    name: str
    factory: Callable[..., Any]
    label: str
    tex: str | None = None
    channels: tuple[int, ...] = (1, 3)
    learnable: bool = False
    channel_param: str | None = None
    defaults: Callable[[Setting], dict[str, Any]] = _no_defaults
    portable_params: Mapping[str, Any] = field(default_factory=dict)
    thesis: bool = True
    untrained_trunk_note: str = ""
    own_metric: str | None = None
    training_notes: str = ""
    check_params: Callable[[Mapping[str, Any]], str | None] = _valid
    minimum: float | None = 0.0

    def display(self, lpips_pretrained: bool = True) -> str:
        """The label, saying so where an LPIPS trunk was untrained."""
        return self.label if lpips_pretrained else self.label + self.untrained_trunk_note

    def check_config(self, params: Mapping[str, Any]) -> str | None:
        """Why the configured ``losses.<name>.params`` are invalid for this loss, one line from that key on
        (``losses.mix.params.weights.l3: ...``), or None: :attr:`check_params`. Called when the configuration is
        loaded."""
        problem = self.check_params(params)
        return None if problem is None else f"losses.{self.name}.params.{problem}"

    def tex_display(self, lpips_pretrained: bool = True) -> str:
        """The LaTeX label: ``tex`` where given, else the escaped :meth:`display`."""
        return self.tex if self.tex is not None else tex_escape(self.display(lpips_pretrained))

    def params(self, setting: Setting, configured: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Constructor parameters on ``setting``: ``configured`` first, then the defaults it leaves unset."""
        params = dict(configured or {})
        for key, value in self.defaults(setting).items():
            params.setdefault(key, value)
        return params

    def build(self, params: Mapping[str, Any], channels: int) -> Any:
        """The loss module for images of ``channels`` channels (told to ``channel_param`` if it has one)."""
        params = dict(params)
        if self.channel_param is not None:
            params.setdefault(self.channel_param, channels)
        return self.factory(**params)


#: Every loss of this process by name: filled by :mod:`lossbench.losses` when it is imported, and by a
#: configuration's own losses. A loss made of other losses (``mix``) looks its terms up here, below the
#: package that lists them, so that no module imports the registry that imports it.
LOSSES: dict[str, LossSpec] = {}


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is shown in tables: label, direction, display scale and decimals.

    Attributes:
        label: Row label (``1000·l1`` for a metric shown ×1000).
        higher_is_better: Direction of the metric.
        scale: Factor applied to the mean before display (1000 for l1 and l2, as the thesis).
        decimals: Decimals shown.
        tex: LaTeX row label without the direction arrow; None: :func:`tex_escape` of ``label``.
        untrained_trunk_note: Appended to the label when the LPIPS trunk was untrained.
        unit: The unit of the unscaled value (``dB`` for PSNR), printed after it by
            ``python -m lossbench.metrics``; None for a unitless ratio or error.
    """

    label: str
    higher_is_better: bool
    scale: float = 1.0
    decimals: int = 4
    tex: str | None = None
    untrained_trunk_note: str = ""
    unit: str | None = None

    @property
    def tex_label(self) -> str:
        return self.tex if self.tex is not None else tex_escape(self.label)

    def display(self, lpips_pretrained: bool = True) -> str:
        """The label, saying so where an LPIPS trunk was untrained."""
        return self.label if lpips_pretrained else self.label + self.untrained_trunk_note


@dataclass(frozen=True)
class MetricSpec:
    """An evaluation metric, computed per image.

    Attributes:
        name: Registry and configuration name (``metrics: [...]``).
        compute: ``compute(output, target, **params)`` on (N, C, H, W) tensors nominally in
            [0, 1], returning (N,) values.
        info: Label, direction and display scale.
        channels: Channel counts C the metric accepts.
        defaults: Task-dependent parameters (FLIP's grayscale mode on 1-channel tasks, ...).
        portable_params: Parameters that let the metric run without fetching weights (tests).
        too_small: The reason an image side is too small for the metric with its defaults
            (``"the msssim metric's 5 scales ..."``), or None when it fits.
        thesis: One of the thesis's six metrics (a row of every table); False: a user's own,
            a row after them where it was computed.
        conditions: The conditions its ``params`` set that a reader needs to compare values (FLIP's
            pixels per degree), as one sentence for a table's footnotes; None when there are none.
        best: The value of identical images, the metric's best (0 for an error, 1 for a
            similarity such as MS-SSIM, inf for PSNR); None where it has none fixed. Checked by the
            contract test (tests/test_contract.py).
        differentiable: Whether ``compute`` gives finite gradients with respect to ``output``, so
            that it could train a network (evaluation computes it without gradients); the
            contract test checks the gradients of those that say so.
        check_evaluation: Why the configuration's ``evaluation`` section (schema defaults filled
            in) is invalid for the metric, in one line from the key below ``evaluation`` on
            (``lpips_weights: ...``), or None: the settings its ``defaults`` read (LPIPS's weights
            file, FLIP's viewing conditions), which the losses built on it read too.
            :meth:`check_config` asks it for every registered metric, configured or not, when the
            configuration is loaded. A user's own metric's ``params`` are checked against the
            keywords of its module by the pipeline.
        reference: Where the metric is defined, in one line: its paper (authors, year, venue) and the
            implementation it follows or is checked against; ``python -m lossbench.metrics --list``
            prints it. A user's own metric's is its module.
        unavailable: Why the metric cannot run in this Python environment (an optional extra that is
            not installed), in one line saying what to install, or None. The configuration's check asks
            it for each metric in ``metrics`` only: an absent extra costs nothing where it is not used.
    """

    name: str
    compute: Callable[..., Any]
    info: MetricInfo
    channels: tuple[int, ...] = (1, 3)
    defaults: Callable[[Setting], dict[str, Any]] = _no_defaults
    portable_params: Mapping[str, Any] = field(default_factory=dict)
    too_small: Callable[[int], str | None] = _any_size
    thesis: bool = True
    conditions: Callable[[Mapping[str, Any]], str | None] = _no_conditions
    best: float | None = 0.0
    differentiable: bool = False
    check_evaluation: Callable[[Mapping[str, Any]], str | None] = _any_evaluation
    reference: str = ""
    unavailable: Callable[[], str | None] = _installed

    def params(self, setting: Setting) -> dict[str, Any]:
        """Parameters of the metric on ``setting``."""
        return self.defaults(setting)

    def check_config(self, evaluation: Mapping[str, Any]) -> str | None:
        """Why the configuration's ``evaluation`` section is invalid for this metric, one line from
        ``evaluation`` on (``evaluation.flip: ...``), or None: :attr:`check_evaluation`. Called when the
        configuration is loaded."""
        problem = self.check_evaluation(evaluation)
        return None if problem is None else f"evaluation.{problem}"
