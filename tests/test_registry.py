"""The registries' order, the adaptive loss's per-channel parameters, and ``python -m lossbench.metrics``.

What every registered loss and metric promises, each checked on its own, is tests/test_contract.py.
"""

import pytest
import torch

from lossbench import losses, metrics
from lossbench.losses import STUDY_LOSSES
from lossbench.metrics import STUDY_METRICS

from test_contract import build_loss


@pytest.mark.parametrize("registry, study", [(losses, STUDY_LOSSES), (metrics, STUDY_METRICS)], ids=["loss", "metric"])
def test_the_thesis_comes_first_then_the_opt_in_ones(registry, study):
    # The tables' columns and rows follow the registries: the thesis's six first, in its order, whatever is added.
    assert registry.names()[: len(study)] == list(study)
    assert all(not registry.spec(name).thesis for name in registry.names()[len(study) :])


def test_adaptive_learns_one_alpha_and_scale_per_channel():
    assert [p.numel() for p in build_loss("adaptive", 3).parameters()] == [3, 3]


def test_metrics_cli_compares_two_image_files(tmp_path):
    import json
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(reference).save(tmp_path / "ref.png")
    Image.fromarray(reference).save(tmp_path / "same.png")
    Image.fromarray(255 - reference).save(tmp_path / "inverted.png")
    Image.fromarray(reference[:32]).save(tmp_path / "small.png")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "lossbench.metrics", *args], capture_output=True, text=True)

    assert (
        run("--metric", "flip", str(tmp_path / "ref.png"), str(tmp_path / "same.png")).stdout
        == "flip = 0 (at 67.02 pixels per degree)\n"
    )
    assert (
        float(run("--metric", "flip", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout.split()[2])
        > 0.3
    )
    assert (
        float(
            run(
                "--metric", "l1", "--gray", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")
            ).stdout.removeprefix("l1 = ")
        )
        > 0.3
    )
    # Every metric's --json row is checked by tests/test_contract.py; here the text beside it, in a process of its own.
    record = json.loads(
        run("--metric", "psnr", "--json", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout
    )
    assert (
        run("--metric", "psnr", str(tmp_path / "ref.png"), str(tmp_path / "inverted.png")).stdout
        == f"psnr = {record['value']:.6g} dB\n"
    )
    mismatch = run("--metric", "l2", str(tmp_path / "ref.png"), str(tmp_path / "small.png"))
    assert mismatch.returncode != 0 and "differs" in mismatch.stderr


def _metrics_cli(capsys, *args):
    """``python -m lossbench.metrics ARGS``, run in this process: what it prints."""
    from lossbench.metrics.__main__ import main

    main(list(args))
    return capsys.readouterr().out


def _cli_error(*args):
    """The message of the CLI's refusal of ``ARGS``, checked to be one line."""
    from lossbench.metrics.__main__ import main

    with pytest.raises(SystemExit) as refusal:
        main(list(args))
    message = str(refusal.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


@pytest.fixture
def noisy_pair(tmp_path):
    """(reference path, test path, reference tensor, test tensor): an 8-bit RGB image and a noisy copy."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    test = np.clip(reference + rng.normal(0, 25, reference.shape), 0, 255).astype(np.uint8)
    paths = [str(tmp_path / "ref.png"), str(tmp_path / "test.png")]
    for path, image in zip(paths, (reference, test)):
        Image.fromarray(image).save(path)
    tensors = [torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255)[None] for image in (reference, test)]
    return (*paths, *tensors)


def _write_config(tmp_path, config):
    import yaml

    path = tmp_path / "lossbench.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_metrics_cli_names_flips_ppd_and_takes_it_from_ppd_or_a_config(tmp_path, tiny_config, noisy_pair, capsys):
    import json

    from lossbench.data.images import read_image
    from lossbench.flip import DEFAULT_PPD, flip

    reference_path, test_path, reference, test = noisy_pair
    default, demo = float(flip(test, reference)[0]), float(flip(test, reference, ppd=22.3)[0])
    # The confusion: the same pair scores very differently at the demo's and the thesis's viewing distance.
    assert demo > default + 0.05
    assert (
        _metrics_cli(capsys, "--metric", "flip", reference_path, test_path)
        == f"flip = {default:.6g} (at 67.02 pixels per degree)\n"
    )
    record = json.loads(_metrics_cli(capsys, "--metric", "flip", "--json", reference_path, test_path))
    # Without a configuration, the pixels per degree of flip_ppd({}): DEFAULT_PPD, computed in float32 as flip-evaluator
    # does.
    assert (record["value"], record["ppd"]) == (pytest.approx(default, abs=1e-7), pytest.approx(DEFAULT_PPD, abs=1e-8))
    assert (
        _metrics_cli(capsys, "--metric", "flip", "--ppd", "22.3", reference_path, test_path)
        == f"flip = {demo:.6g} (at 22.3 pixels per degree)\n"
    )
    assert (
        json.loads(_metrics_cli(capsys, "--metric", "flip", "--ppd", "22.3", "--json", reference_path, test_path))[
            "value"
        ]
        == demo
    )

    tiny_config["evaluation"] = {"flip": {"ppd": 22.3}, "flip_gray_mode": "gray_lab"}
    config = _write_config(tmp_path, tiny_config)
    record = json.loads(
        _metrics_cli(capsys, "--metric", "flip", "--config", config, "--json", reference_path, test_path)
    )
    assert (record["value"], record["ppd"]) == (demo, 22.3)
    assert (
        json.loads(
            _metrics_cli(
                capsys,
                "--metric",
                "flip",
                "--config",
                config,
                "--ppd",
                str(DEFAULT_PPD),
                "--json",
                reference_path,
                test_path,
            )
        )["value"]
        == default
    )
    # The configuration's grayscale reading too, unless --flip-mode says otherwise.
    gray_reference, gray_test = (
        torch.from_numpy(read_image(path, gray=True))[None, None] for path in (reference_path, test_path)
    )
    for options, mode in (((), "gray_lab"), (("--flip-mode", "gray_thesis"), "gray_thesis")):
        value = json.loads(
            _metrics_cli(
                capsys, "--metric", "flip", "--gray", "--config", config, *options, "--json", reference_path, test_path
            )
        )["value"]
        assert value == float(flip(gray_test, gray_reference, ppd=22.3, mode=mode)[0])


def test_metrics_cli_computes_a_users_metric_registered_by_its_config(
    tmp_path, tiny_config, noisy_pair, capsys, monkeypatch, request
):
    import json
    import sys

    name = f"cli_metric_{tmp_path.name.replace('-', '_')}"
    request.addfinalizer(lambda: sys.modules.pop(name, None))
    (tmp_path / f"{name}.py").write_text(
        "def max_error(output, target, power=1.0):\n    return (output - target).abs().flatten(1).amax(dim=1) **"
        " power\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(metrics, "SPECS", dict(metrics.SPECS))  # the registration ends with the test
    tiny_config["own_metrics"] = {
        "max_error": {"module": f"{name}:max_error", "direction": "higher", "params": {"power": 2.0}}
    }
    config = _write_config(tmp_path, tiny_config)
    reference_path, test_path, reference, test = noisy_pair
    assert "unknown metric 'max_error'" in _cli_error("--metric", "max_error", reference_path, test_path)
    record = json.loads(
        _metrics_cli(capsys, "--metric", "max_error", "--config", config, "--json", reference_path, test_path)
    )
    expected = float((test - reference).abs().max() ** 2)
    assert record == {
        "metric": "max_error",
        "value": pytest.approx(expected),
        "unit": None,
        "better": "higher",
        "ppd": None,
        "reference": reference_path,
        "test": test_path,
    }
    assert (
        _metrics_cli(capsys, "--metric", "max_error", "--config", config, reference_path, test_path)
        == f"max_error = {record['value']:.6g}\n"
    )


def test_metrics_cli_refuses_bad_options_in_one_line(tmp_path, tiny_config, noisy_pair):
    reference_path, test_path, _, _ = noisy_pair
    missing = str(tmp_path / "missing.yaml")
    assert (
        _cli_error("--metric", "flip", "--config", missing, reference_path, test_path)
        == f"error: {missing}: configuration file does not exist"
    )
    tiny_config["evaluation"] = {"flip": {"ppd": -1}}
    config = _write_config(tmp_path, tiny_config)
    assert _cli_error("--metric", "flip", "--config", config, reference_path, test_path).startswith(
        f"error: {config}: evaluation.flip.ppd: -1 "
    )
    assert (
        _cli_error("--metric", "flip", "--ppd", "0", reference_path, test_path)
        == "error: --ppd: expected a positive number of pixels per degree, got 0.0"
    )
    assert (
        _cli_error("--metric", "psnr", "--ppd", "22.3", reference_path, test_path)
        == "error: --ppd: the psnr metric takes no pixels per degree (FLIP does)"
    )


def test_metrics_cli_lists_every_metric_with_direction_unit_and_reference(
    tmp_path, tiny_config, capsys, monkeypatch, request
):
    import json
    import sys

    lines = _metrics_cli(capsys, "--list").splitlines()
    assert lines[0].split() == ["metric", "better", "unit", "reference"]
    listed = {line.split()[0]: line for line in lines[1:]}
    assert list(listed) == metrics.names()
    for name, line in listed.items():
        spec = metrics.spec(name)
        better, unit, reference = line.split(None, 3)[1:]
        assert better == ("higher" if spec.info.higher_is_better else "lower")
        assert unit == (spec.info.unit or "-") and reference == spec.reference
    assert listed["psnr"].split()[1:3] == ["higher", "dB"] and listed["dists"].split()[1:3] == ["lower", "-"]
    assert "Ding, Ma, Wang & Simoncelli 2020" in listed["dists"]
    # --json: one list; with --config the configuration's own metrics join the package's.
    name = f"list_metric_{tmp_path.name.replace('-', '_')}"
    request.addfinalizer(lambda: sys.modules.pop(name, None))
    (tmp_path / f"{name}.py").write_text(
        "def worst(output, target):\n    return (output - target).abs().amax((1, 2, 3))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(metrics, "SPECS", dict(metrics.SPECS))  # the registration ends with the test
    tiny_config["own_metrics"] = {"worst": {"module": f"{name}:worst", "direction": "lower"}}
    rows = json.loads(_metrics_cli(capsys, "--list", "--json", "--config", _write_config(tmp_path, tiny_config)))
    assert [row["metric"] for row in rows] == [*metrics.names(), "worst"]
    assert rows[-1] == {
        "metric": "worst",
        "label": "worst",
        "better": "lower",
        "unit": None,
        "reference": f"own metric, {name}:worst (own_metrics.worst)",
        "thesis": False,
    }
    assert rows[2] == {
        "metric": "psnr",
        "label": "PSNR",
        "better": "higher",
        "unit": "dB",
        "reference": metrics.spec("psnr").reference,
        "thesis": True,
    }


def test_metrics_cli_list_refuses_a_metric_and_files(noisy_pair, capsys):
    from lossbench.metrics.__main__ import main

    for args in (["--list", "--metric", "l1"], ["--list", *noisy_pair[:2]], ["--metric", "l1"], [noisy_pair[0]]):
        with pytest.raises(SystemExit) as refusal:
            main(args)
        assert refusal.value.code == 2
    assert "--list takes no --metric and no image files" in capsys.readouterr().err
