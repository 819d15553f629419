"""Training takes a scalar: a configured ``reduction: none`` is refused in one line.

That every registered loss reduces as ``reduction=`` says ('mean', 'sum', 'none' per image) is
checked by tests/test_contract.py.
"""

import pytest


def test_training_rejects_per_image_losses_in_one_line(tiny_config):
    from lossbench.pipeline.config import validate
    from lossbench.pipeline.config_file import ConfigError

    tiny_config["losses"]["l1"]["params"] = {"reduction": "none"}
    with pytest.raises(
        ConfigError,
        match=(
            r"^tiny\.yaml: losses\.l1\.params\.reduction: 'none' gives one loss per image; training needs a scalar"
            r" \('mean' or 'sum'\)$"
        ),
    ):
        validate(tiny_config, "tiny.yaml")
