"""docs/extending.md as it stands: every block that names its file is written, applied or validated; its losses
and metrics pass the contract.

A block's first line names its file:

- ``# src/<path>.py``: a new module of the package, written into a copy of the source tree;
- ``# src/<path>`` over a ``diff`` block: an edit of a package file, applied to that copy (``-``
  lines go, ``+`` lines come, `` `` lines must be there as they are; ``@@`` separates hunks);
- ``# mypkg/<path>.py``: a user's module outside the package;
- ``# config/<name>.yaml``: merged into the demo's config.yaml key by key, as Snakemake merges a
  second ``--configfile``; ``# config.yaml``: sections that replace config.yaml's.

The package's examples run in a process of their own, on the copy of the source tree (one process
cannot import two lossbench packages): there the contract test, tests/test_contract.py, unedited,
collects the doc's loss and metric from the registries, and the tests ``test_in_docs_tree_*`` below
validate the doc's configurations and build its task kind and network. The configuration route
runs in this process.
"""

from __future__ import annotations

import copy
import os
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from lossbench import losses, metrics
from lossbench.core.specs import LossSpec, MetricSpec

from conftest import REPO
from test_contract import LOSS_CHECKS, METRIC_CHECKS, check_loss, check_metric

DOC = REPO / "docs" / "extending.md"

#: A fenced block: its language and its text.
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

#: The first line of a block that names its file.
FILE_LINE = re.compile(r"# ((?:src|mypkg|config)/[\w./-]+|config\.yaml)")

#: Set, to the folder of the copied source tree, in the process that runs the package's examples.
DOCS_TREE = "LOSSBENCH_DOCS_TREE"

in_docs_tree = pytest.mark.skipif(
    DOCS_TREE not in os.environ,
    reason="runs in test_the_package_examples_pass_the_contract's process, on src/ with the doc's examples",
)


@dataclass(frozen=True)
class Block:
    """A fenced block of the doc that names its file in its first line.

    Attributes:
        language: The fence's language (``python``, ``diff``, ``yaml``).
        path: The file, relative to the repository (``src/lossbench/losses/charbonnier.py``).
        text: The whole block, its first line included, as a reader copies it.
    """

    language: str
    path: str
    text: str

    @property
    def body(self) -> str:
        """The block without its first line."""
        return self.text.partition("\n")[2]


def blocks(prefix: str = "") -> list[Block]:
    """The doc's blocks that name a file under ``prefix``, in the doc's order."""
    found = []
    for language, text in FENCE.findall(DOC.read_text(encoding="utf-8")):
        named = FILE_LINE.fullmatch(text.partition("\n")[0])
        if named is not None and named.group(1).startswith(prefix):
            found.append(Block(language, named.group(1), text))
    return found


def apply_diff(text: str, block: Block) -> str:
    """``text`` with the diff of ``block`` applied: each hunk's old lines must be there once, as whole lines.

    Raises:
        AssertionError: a line that is not context, removal or addition, or a hunk whose old lines are
            not in ``text`` exactly once (the doc no longer fits the source).
    """
    lines = text.split("\n")
    for hunk in re.split(r"^@@.*\n", block.body, flags=re.MULTILINE):
        if not hunk:
            continue
        changes = hunk.rstrip("\n").split("\n")
        assert all(change[:1] in (" ", "-", "+") for change in changes), (
            f"{block.path}: a diff line of the doc starts with neither ' ', '-' nor '+'"
        )
        old = [change[1:] for change in changes if change[:1] in (" ", "-")]
        new = [change[1:] for change in changes if change[:1] in (" ", "+")]
        starts = [start for start in range(len(lines) - len(old) + 1) if lines[start : start + len(old)] == old]
        assert old and len(starts) == 1, (
            f"{block.path}: the doc's lines {old} are there {len(starts)} time(s), expected once"
        )
        lines[starts[0] : starts[0] + len(old)] = new
    return "\n".join(lines)


def write_package_tree(root: Path) -> Path:
    """A copy of src/ under ``root`` with the doc's modules written into it and its diffs applied; the copy's src/."""
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for block in blocks("src/"):
        path = root / block.path
        if block.language == "diff":
            path.write_text(apply_diff(path.read_text(encoding="utf-8"), block), encoding="utf-8")
        else:
            assert not path.exists(), f"{block.path}: the doc's new module is already in the package"
            path.write_text(block.text, encoding="utf-8")
    return root / "src"


def write_user_modules(root: Path) -> None:
    """The doc's modules outside the package (``mypkg/...``), written under ``root``."""
    for block in blocks("mypkg/"):
        (root / block.path).parent.mkdir(parents=True, exist_ok=True)
        (root / block.path).write_text(block.text, encoding="utf-8")


def merged(base: dict, overlay: dict) -> dict:
    """``overlay`` merged into a copy of ``base`` as Snakemake merges configurations: mappings merge, others replace."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        result[key] = (
            merged(result[key], value)
            if isinstance(value, dict) and isinstance(result.get(key), dict)
            else copy.deepcopy(value)
        )
    return result


def doc_config(block: Block) -> dict:
    """config.yaml with the doc's ``block``: merged (``config/...``) or replacing its sections (``config.yaml``)."""
    base = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    sections = yaml.safe_load(block.body)
    return merged(base, sections) if block.path.startswith("config/") else {**base, **sections}


def spec_names(root: Path, block: Block, kind: type) -> list[str]:
    """The names of the ``kind`` specs (LossSpec, MetricSpec) of the doc's module ``block``, written under ``root``.

    The module imports only lossbench's shared parts (specs, checks), the same in this process as in
    the copied tree, so it runs here.
    """
    return [value.name for value in runpy.run_path(str(root / block.path)).values() if isinstance(value, kind)]


def test_the_doc_shows_every_route_with_its_registration():
    named = {block.path: block.language for block in blocks()}
    for added, registry in (
        ("src/lossbench/losses/", "src/lossbench/losses/__init__.py"),
        ("src/lossbench/metrics/", "src/lossbench/metrics/__init__.py"),
        ("src/lossbench/data/kinds/", "src/lossbench/data/tasks.py"),
        ("src/lossbench/models/", "src/lossbench/models/__init__.py"),
    ):
        assert any(path.startswith(added) and language == "python" for path, language in named.items()), (
            f"the doc adds no module under {added}"
        )
        assert named.get(registry) == "diff", f"the doc does not show the registration in {registry}"
    assert any(path.startswith("mypkg/") for path in named) and any(path.startswith("config/") for path in named)
    # A loss or metric of the package is one line of its registry.
    for registry in ("src/lossbench/losses/__init__.py", "src/lossbench/metrics/__init__.py"):
        body = next(block for block in blocks(registry)).body
        assert sum(line.startswith(("+", "-")) for line in body.splitlines()) == 1


def test_the_package_examples_pass_the_contract(tmp_path):
    src = write_package_tree(tmp_path)
    write_user_modules(tmp_path)
    added = {
        "test_loss": [
            name
            for block in blocks("src/lossbench/losses/")
            if block.language == "python"
            for name in spec_names(tmp_path, block, LossSpec)
        ],
        "test_metric": [
            name
            for block in blocks("src/lossbench/metrics/")
            if block.language == "python"
            for name in spec_names(tmp_path, block, MetricSpec)
        ],
    }
    assert added["test_loss"] and added["test_metric"]
    checks = {"test_loss": LOSS_CHECKS, "test_metric": METRIC_CHECKS}
    # The contract test's own ids: a spec it did not collect from the registries is "not found", a failure.
    contract = [
        f"tests/test_contract.py::{test}[{name}-{check.__name__}]"
        for test, names in added.items()
        for name in names
        for check in checks[test]
    ]
    in_tree = [f"tests/test_extending_docs.py::{name}" for name in globals() if name.startswith("test_in_docs_tree_")]
    # The copy first, so that it is the lossbench imported; then the user's modules (mypkg).
    paths = [str(src), str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    environment = {**os.environ, DOCS_TREE: str(tmp_path), "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *contract, *in_tree],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert f"{len(contract) + len(in_tree)} passed" in result.stdout, result.stdout[-3000:]


def test_the_configuration_route_passes_the_contract(tmp_path, monkeypatch):
    from lossbench.pipeline.config import validate
    from lossbench.registry import Registry

    write_user_modules(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (block,) = [block for block in blocks("config/") if "own_metrics" in yaml.safe_load(block.body)]
    try:
        registry = Registry.from_config(validate(doc_config(block), "config.yaml", require_data=False))
        own_losses = {name: spec for name, spec in registry.losses.items() if name not in losses.SPECS}
        own_metrics = {name: spec for name, spec in registry.metrics.items() if name not in metrics.SPECS}
        assert own_losses and own_metrics
        # The contract's checks look names up among the package's specs: the configuration's own join them for this
        # test only, as a package loss or metric would.
        for package, own in ((losses.SPECS, own_losses), (metrics.SPECS, own_metrics)):
            for name, spec in own.items():
                monkeypatch.setitem(package, name, spec)
        for name in own_losses:
            check_loss(name)
        for name in own_metrics:
            check_metric(name)
    finally:
        for module in [module for module in sys.modules if module == "mypkg" or module.startswith("mypkg.")]:
            del sys.modules[module]


@in_docs_tree
def test_in_docs_tree_every_configuration_of_the_doc_validates():
    from lossbench.pipeline.config import validate

    for block in blocks("config"):
        config = validate(doc_config(block), block.path, require_data=False)
        assert config is not None


@in_docs_tree
def test_in_docs_tree_the_task_kind_gives_training_pairs_a_validation_set_and_a_table(tmp_path):
    from lossbench.data import tasks
    from lossbench.data.valset import ImageFile
    from lossbench.pipeline.config import validate
    from lossbench.pipeline.job_settings import task_data
    from lossbench.pipeline.sections import task_tables

    (block,) = [block for block in blocks("config/") if "tasks" in yaml.safe_load(block.body)]
    config = validate(doc_config(block), block.path, require_data=False)
    (task,) = yaml.safe_load(block.body)["tasks"]
    kind = config["tasks"][task]["kind"]
    assert task_tables(config)[f"table_{task}"] == task
    tasks.prepare_embedded_photos(["astronaut", "coffee"], tmp_path / "photos", 96)
    settings = task_data(config, task)
    degraded, clean = tasks.train_dataset(kind, settings, tmp_path / "photos").pair(1, 7)
    assert degraded.shape == clean.shape == (
        tasks.channels(kind),
        settings["crop"],
        settings["crop"],
    ) and not torch.equal(degraded, clean)
    assert tasks.write_valset(kind, settings, tmp_path / "photos", tmp_path / "val.h5") == 2
    with ImageFile(tmp_path / "val.h5") as valset:
        assert valset.attrs["kind"] == kind
        assert (
            valset.read("input", "astronaut").shape
            == valset.read("target", "astronaut").shape
            == (tasks.channels(kind), 96, 96)
        )


@in_docs_tree
def test_in_docs_tree_the_network_restores_any_size_and_counts_its_weights():
    from lossbench import models
    from lossbench.pipeline.config import validate

    (block,) = blocks("config.yaml")
    section = validate(doc_config(block), block.path, require_data=False)["model"]
    spec = models.of(section)
    for channels in (1, 3):
        network = models.build(section, channels)
        assert network(torch.rand(2, channels, 30, 34)).shape == (2, channels, 30, 34)
        assert sum(parameter.numel() for parameter in network.parameters()) == spec.parameters(
            models.params(section), channels
        )
