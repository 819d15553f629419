"""Choosing learning rates from a sweep, and feeding them back through ``learning_rates_file``."""

import math

import pytest
import yaml

from lossbench.pipeline.config import validate
from lossbench.pipeline.config_file import ConfigError
from lossbench.pipeline.job_settings import learning_rate, run_settings
from lossbench.pipeline.lr_sweep import choose, sweep_settings, write_choice


def test_the_lowest_finite_final_validation_loss_wins():
    results = {"l1": {1e-4: 0.2, 1e-3: 0.1, 1e-2: None}, "l2": {1e-4: 0.05, 1e-3: math.nan, 1e-2: 0.3}}
    assert choose(results, "denoise") == {"l1": 1e-3, "l2": 1e-4}
    with pytest.raises(
        ValueError, match=r"lr_sweep: knee/flip: every learning rate of the grid \[0.001, 0.01\] diverged"
    ):
        choose({"flip": {1e-2: None, 1e-3: math.inf}}, "knee")


def test_written_choice_overrides_the_configured_rate(tmp_path, tiny_config):
    path = tmp_path / "rates.yaml"
    write_choice("knee", {"l2": {1e-4: 0.5, 3e-4: 0.4}}, path)
    assert "#   l2: 0.0001 → 0.5, 0.0003 → 0.4" in path.read_text()
    config = validate({**tiny_config, "learning_rates_file": str(path)})
    assert learning_rate(config, "knee", "l2") == 3e-4
    assert learning_rate(config, "brain", "l2") == 2e-3 and learning_rate(config, "knee", "l1") == 1e-3
    assert run_settings(config, "knee", "l2", 0).lr == 3e-4


def test_sweep_spec_changes_only_rate_and_epochs(tiny_config):
    config = validate({**tiny_config, "seeds": [4, 5], "lr_sweep": {"grid": [1e-3], "epochs": 3}})
    spec = sweep_settings(config, "denoise", "l1", 1e-3)
    assert (spec.lr, spec.training.epochs, spec.seed) == (1e-3, 3, 4)
    plain, configured = spec.to_dict(), run_settings(config, "denoise", "l1", 4).to_dict()
    assert {k: v for k, v in plain.items() if k not in ("lr", "training")} == {
        k: v for k, v in configured.items() if k not in ("lr", "training")
    }
    assert {k: v for k, v in plain["training"].items() if k != "epochs"} == {
        k: v for k, v in configured["training"].items() if k != "epochs"
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "learning_rates_file: file '{path}' does not exist"),
        # The file's values are never echoed (a configuration may name any file): its key and the kind of value.
        (
            {"denoise": {"l1": -1}},
            "{path}: denoise.l1: expected a positive finite learning rate, got a negative number",
        ),
        (
            {"mri": {"l1": 1e-3}},
            (
                "{path}: expected {{task: {{loss: positive learning rate}}}} with tasks among denoise, knee, brain, got"
                " 'mri'"
            ),
        ),
    ],
)
def test_bad_learning_rates_file_is_one_clear_line(tmp_path, tiny_config, content, message):
    path = tmp_path / "rates.yaml"
    if content is not None:
        path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as error:
        validate({**tiny_config, "learning_rates_file": str(path)})
    assert message.format(path=path) in str(error.value) and "\n" not in str(error.value)
