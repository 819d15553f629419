"""Bounds of configuration values that would otherwise exhaust the machine, hang, or fail late (issue 27, item 5).

Each refusal is one line naming the file and the key; files read as configuration never reach a
message with their contents.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys

import pytest

from lossbench.metrics import lpips as lpips_metric
from lossbench.pipeline.config import load, validate
from lossbench.pipeline.config_file import ConfigError, read_yaml
from lossbench.pipeline.job_settings import learning_rate

from conftest import REPO, TINY_CONFIG

#: A line a file named by mistake could hold; no message may show it.
SECRET = "root:x:0:0:hunter2"


@contextlib.contextmanager
def _within(seconds: int):
    """Fail, rather than hang the suite, when the block runs longer than ``seconds`` (the bugs here were hangs)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def _refused(config, message, source="tiny.yaml"):
    with pytest.raises(ConfigError, match=message) as error:
        validate(config, source, require_data=False)
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        (
            "tasks.denoise.training.workers",
            100_000,
            r"^tiny\.yaml: tasks\.denoise\.training\.workers: 100000 is greater than the maximum of 64$",
        ),
        ("threads", 100_000, r"^tiny\.yaml: threads: 100000 is greater than the maximum of 256$"),
        (
            "seeds",
            [2**64],
            r"^tiny\.yaml: seeds\.0: 18446744073709551616 is greater than the maximum of 9223372036854775807$",
        ),
        ("seeds", list(range(1001)), r"^tiny\.yaml: seeds: \[0, 1, .* is too long$"),
        (
            "userstudy.seed",
            2**63,
            r"^tiny\.yaml: userstudy\.seed: 9223372036854775808 is greater than the maximum of 9223372036854775807$",
        ),
        (
            "userstudy.bootstrap_samples",
            10**12,
            r"^tiny\.yaml: userstudy\.bootstrap_samples: 1000000000000 is greater than the maximum of 100000$",
        ),
        (
            "tasks.knee.data.train.volumes",
            10**6,
            r"^tiny\.yaml: tasks\.knee\.data\.train\.volumes: 1000000 is greater than the maximum of 10000$",
        ),
        (
            "tasks.knee.data.val.slices",
            10**6,
            r"^tiny\.yaml: tasks\.knee\.data\.val\.slices: 1000000 is greater than the maximum of 1000$",
        ),
        (
            "tasks.brain.data.matrix",
            10**6,
            r"^tiny\.yaml: tasks\.brain\.data\.matrix: 1000000 is greater than the maximum of 1024$",
        ),
        ("model.depth", 10**12, r"^tiny\.yaml: model\.depth: 1000000000000 is greater than the maximum of 16$"),
        (
            "lr_sweep.grid",
            [(index + 1) * 1e-5 for index in range(101)],
            r"^tiny\.yaml: lr_sweep\.grid: \[.* is too long$",
        ),
        (
            "evaluation.flip.ppd",
            1e9,
            r"^tiny\.yaml: evaluation\.flip\.ppd: 1000000000\.0 is greater than the maximum of 1000$",
        ),
        (
            "losses.flip.params",
            {"ppd": 1e9},
            r"^tiny\.yaml: losses\.flip\.params\.ppd: 1000000000\.0 is greater than the maximum of 1000$",
        ),
    ],
)
def test_values_that_take_the_machine_are_refused_naming_the_key(tiny_config, dotted, value, message):
    _set(tiny_config, dotted, value)
    with _within(60):
        _refused(tiny_config, message)


def test_the_bounds_leave_real_use_alone(tiny_config):
    for dotted, value in [
        ("tasks.denoise.training.workers", 64),
        ("threads", 256),
        ("seeds", [0, 2**63 - 1]),
        ("userstudy.seed", 2**63 - 1),
        ("userstudy.bootstrap_samples", 100_000),
        ("evaluation.flip.ppd", 1000),
        ("tasks.denoise.training.epochs", 10**8),
    ]:
        _set(tiny_config, dotted, value)
    config = validate(tiny_config, "tiny.yaml", require_data=False)
    assert config["seeds"] == [0, 2**63 - 1] and config["threads"] == 256


@pytest.mark.parametrize(
    "model, crop, message",
    [
        # The case: at depth 2 a 32-pixel crop leaves 8×8 bottleneck maps, of which a kernel can use 2·8 − 1 =
        # 15 pixels.
        (
            {"kernel_size": 1001},
            32,
            (
                r"^tiny\.yaml: model\.kernel_size: 1001 is wider than the 15 pixels \(2·8 − 1\) a kernel can use on the"
                r" 8×8 feature maps of level 2 \(tasks\.denoise\.crop 32 pooled 2 times\); expected at most 15, or a"
                r" larger crop$"
            ),
        ),
        ({"kernel_size": 17}, 32, r"model\.kernel_size: 17 is wider than the 15 pixels"),
        # Named as the kernel's fault, not as a memory limit of the width and depth.
        ({"kernel_size": 10**9 + 1}, 32, r"model\.kernel_size: 1000000001 is wider than the 15 pixels"),
        ({"kernel_sizes": [3, 3, 17]}, 32, r"^tiny\.yaml: model\.kernel_sizes\.2: 17 is wider than the 15 pixels"),
        (
            {"kernel_sizes": [65, 3, 3]},
            32,
            (
                r"^tiny\.yaml: model\.kernel_sizes\.0: 65 is wider than the 63 pixels \(2·32 − 1\) a kernel can use on"
                r" the 32×32 feature maps of level 0"
            ),
        ),
        # The U-net pads a 33-pixel crop to 36 at depth 2: 9×9 bottleneck maps, 17 pixels.
        (
            {"kernel_size": 19},
            33,
            (
                r"model\.kernel_size: 19 is wider than the 17 pixels \(2·9 − 1\) .* \(tasks\.denoise\.crop 33 pooled 2"
                r" times\)"
            ),
        ),
    ],
)
def test_kernels_wider_than_the_crop_allows_are_refused_naming_both_keys(tiny_config, model, crop, message):
    tiny_config["model"].update(model)
    tiny_config["tasks"]["denoise"]["crop"] = crop
    _refused(tiny_config, message)


@pytest.mark.parametrize(
    "model, crop", [({"kernel_size": 15}, 32), ({"kernel_sizes": [63, 31, 15]}, 32), ({"kernel_size": 17}, 33)]
)
def test_kernels_the_crop_can_use_pass(tiny_config, model, crop):
    tiny_config["model"].update(model)
    tiny_config["tasks"]["denoise"]["crop"] = crop
    validate(tiny_config, "tiny.yaml", require_data=False)


def test_a_network_without_kernel_keys_is_not_checked_for_kernels(tiny_config):
    tiny_config["model"] = {"name": "fastmri_unet", "chans": 4, "num_pool_layers": 2}
    validate(tiny_config, "tiny.yaml", require_data=False)


@pytest.mark.parametrize(
    "changes, message",
    [
        # tiny.yaml's denoising task: 2 photographs × 2 crops in batches of 4, one step per epoch.
        (
            {"tasks.denoise.training.epochs": 10**8 + 1},
            (
                r"^tiny\.yaml: tasks\.denoise\.training\.epochs: 100000001 epochs × 1 steps per epoch \(2 photographs ×"
                r" 2 crops of tasks\.denoise in batches of 4\) = 1e\+08 training steps; expected at most 1e\+08$"
            ),
        ),
        (
            {"tasks.denoise.training.epochs": 10**12},
            r"^tiny\.yaml: tasks\.denoise\.training\.epochs: 1000000000000 epochs × 1 steps per epoch",
        ),
        (
            {"tasks.denoise.crops_per_image": 10**9, "tasks.denoise.training.epochs": 1},
            (
                r"tasks\.denoise\.training\.epochs: 1 epochs × 500000000 steps per epoch \(2 photographs × 1000000000"
                r" crops"
            ),
        ),
        (
            {
                "tasks.knee.data.train.volumes": 10_000,
                "tasks.knee.data.train.slices": 1000,
                "tasks.knee.training.epochs": 100,
            },
            (
                r"tasks\.knee\.training\.epochs: 100 epochs × 5000000 steps per epoch \(10000 volumes × 1000 slices of"
                r" tasks\.knee in batches of 2\)"
            ),
        ),
        (
            {"lr_sweep.epochs": 10**9},
            (
                r"^tiny\.yaml: lr_sweep\.epochs: 1000000000 epochs × 1 steps per epoch \(2 photographs × 2 crops of"
                r" tasks\.denoise"
            ),
        ),
        # A folder is counted only when the job runs: at least one image per epoch.
        (
            {
                "tasks.denoise.data": {
                    "source": "folder",
                    "train_dir": "/nonexistent/train",
                    "val_dir": "/nonexistent/val",
                },
                "tasks.denoise.training.epochs": 10**9,
                "figures": {},
                "userstudy.stimuli": {},
            },
            r"tasks\.denoise\.training\.epochs: 1000000000 epochs × 1 steps per epoch \(at least one image × 2 crops",
        ),
    ],
)
def test_epochs_are_bounded_by_a_step_budget(tiny_config, changes, message):
    for dotted, value in changes.items():
        _set(tiny_config, dotted, value)
    _refused(tiny_config, message)


def test_synthetic_data_are_bounded_by_their_size_on_disk(tiny_config):
    _set(tiny_config, "tasks.brain.data.val", {"volumes": 10_000, "slices": 1000})
    _refused(
        tiny_config,
        r"^tiny\.yaml: tasks\.brain\.data\.val: 10000 volumes × 1000 slices of 320×320 synthetic multicoil data take"
        r" about 6\.48e\+04 GiB of files; expected at most 256 GiB \(fewer volumes or slices\)$",
    )
    _set(tiny_config, "tasks.brain.data.val", {"volumes": 100, "slices": 40})  # 7 GiB
    validate(tiny_config, "tiny.yaml", require_data=False)


def test_a_viewing_geometry_of_absurd_pixels_per_degree_is_refused(tiny_config):
    tiny_config["evaluation"] = {"flip": {"distance_m": 1000.0}}
    _refused(
        tiny_config,
        r"^tiny\.yaml: evaluation\.flip: distance_m 1000\.0, monitor_width_m 0\.7, monitor_pixels 3840 give 9\.574e\+04"
        r" pixels per degree; expected at most 1000 \(FLIP's filters widen with it\)$",
    )
    tiny_config["evaluation"] = {"flip": {"monitor_width_m": 1e-320}}  # a float64 overflow
    _refused(
        tiny_config,
        r"evaluation\.flip: distance_m 0\.7, monitor_width_m 1e-320, monitor_pixels 3840 give inf pixels per degree",
    )


def test_lpips_weights_must_be_torchvisions_alexnet_checkpoint(tiny_config, tmp_path, monkeypatch):
    secret = tmp_path / "passwd"
    secret.write_text(SECRET + "\n")
    tiny_config["evaluation"] = {"lpips_weights": str(secret)}
    message = _refused(
        tiny_config,
        rf"^tiny\.yaml: evaluation\.lpips_weights: '{re.escape(str(secret))}' has 19 bytes; expected torchvision's"
        r" alexnet-owt-7be5be79\.pth \(244408911 bytes, SHA-256 7be5be791159472b\.\.\.\)$",
    )
    assert "hunter2" not in message
    # The right size, the wrong bytes (sparse: no disk, but all of it is hashed).
    impostor = tmp_path / "alexnet-owt-7be5be79.pth"
    with open(impostor, "wb") as handle:
        handle.truncate(lpips_metric.ALEXNET_BYTES)
    tiny_config["evaluation"] = {"lpips_weights": str(impostor)}
    zeros = hashlib.sha256()
    for start in range(0, lpips_metric.ALEXNET_BYTES, 2**20):
        zeros.update(bytes(min(2**20, lpips_metric.ALEXNET_BYTES - start)))
    _refused(
        tiny_config,
        rf"evaluation\.lpips_weights: '{re.escape(str(impostor))}' has SHA-256 {zeros.hexdigest()[:16]}\.\.\.; expected"
        r" torchvision's alexnet-owt-7be5be79\.pth",
    )
    # The published file passes: stood in for by a small one whose digest is pinned for the test.
    stand_in = tmp_path / "stand_in.pth"
    stand_in.write_bytes(b"weights")
    monkeypatch.setattr(lpips_metric, "ALEXNET_BYTES", len(b"weights"))
    monkeypatch.setattr(lpips_metric, "ALEXNET_SHA256", hashlib.sha256(b"weights").hexdigest())
    tiny_config["evaluation"] = {"lpips_weights": str(stand_in)}
    assert validate(tiny_config, "tiny.yaml", require_data=False)["evaluation"]["lpips_weights"] == str(stand_in)


def test_the_pinned_alexnet_digest_is_the_one_its_name_carries():
    # torchvision names its checkpoints by the first 8 hex digits of their SHA-256 (torch.hub's check_hash).
    assert lpips_metric.ALEXNET_FILE.removesuffix(".pth").rsplit("-", 1)[1] == lpips_metric.ALEXNET_SHA256[:8]
    assert len(bytes.fromhex(lpips_metric.ALEXNET_SHA256)) == 32


@pytest.mark.parametrize(
    "content, message",
    [
        (
            SECRET + "\nbin:x:2:2:bin\n",
            (
                r"^{path}: expected \{{task: \{{loss: positive learning rate\}}\}} with tasks among denoise, knee,"
                r" brain, got text \(learning_rates_file of tiny\.yaml\)$"
            ),
        ),
        ("", r"^{path}: expected .*, got nothing \(learning_rates_file of tiny\.yaml\)$"),
        (f"[{SECRET!r}]\n", r"^{path}: expected .*, got a list \(learning_rates_file of tiny\.yaml\)$"),
        (
            f"{SECRET!r}: {{l1: 1.0e-3}}\n",
            r"^{path}: expected .* with tasks among denoise, knee, brain, got key 1, not a configured task$",
        ),
        ("denoise: {l1: 1.0e-3}\nliver: {l1: 1.0e-3}\n", r"^{path}: expected .*, got 'liver', not a configured task$"),
        (f"denoise: {SECRET!r}\n", r"^{path}: denoise: expected \{{loss: positive learning rate\}}, got text$"),
        (
            f"denoise: {{l1: {SECRET!r}}}\n",
            r"^{path}: denoise\.l1: expected a positive finite learning rate, got text$",
        ),
        (
            f"denoise: {{{SECRET!r}: -1}}\n",
            r"^{path}: denoise\.<key 1>: expected a positive finite learning rate, got a negative number$",
        ),
        (
            "denoise: {l1: -1}\n",
            r"^{path}: denoise\.l1: expected a positive finite learning rate, got a negative number$",
        ),
        ("denoise: {l1: 0}\n", r"^{path}: denoise\.l1: expected a positive finite learning rate, got zero$"),
        (
            "denoise: {l1: .nan}\n",
            r"^{path}: denoise\.l1: expected a positive finite learning rate, got a non-finite number$",
        ),
        ("denoise: {l1: true}\n", r"^{path}: denoise\.l1: expected a positive finite learning rate, got a boolean$"),
    ],
)
def test_a_learning_rates_file_is_named_never_quoted(tiny_config, tmp_path, content, message):
    path = tmp_path / "rates.yaml"
    path.write_text(content)
    tiny_config["learning_rates_file"] = str(path)
    text = _refused(tiny_config, message.format(path=re.escape(str(path))))
    assert "hunter2" not in text and "bin:x" not in text


def test_a_good_learning_rates_file_still_overrides(tiny_config, tmp_path):
    path = tmp_path / "rates.yaml"
    path.write_text("denoise: {l1: 5.0e-4}\n")
    tiny_config["learning_rates_file"] = str(path)
    assert learning_rate(validate(tiny_config, "tiny.yaml", require_data=False), "denoise", "l1") == 5e-4


def _tiny_with(tmp_path, name, extra):
    """tests/data/config_tiny.yaml with ``extra`` (YAML text) as the l1 loss's free-form params, at
    ``tmp_path/name``."""
    text = TINY_CONFIG.read_text().replace(
        "  l1: {lr: 1.0e-3}\n",
        "  l1:\n    lr: 1.0e-3\n    params:\n" + "".join(f"      {line}\n" for line in extra.splitlines()),
        1,
    )
    assert text != TINY_CONFIG.read_text()
    path = tmp_path / name
    path.write_text(text)
    return path, text.splitlines().index("    params:") + 2


#: The billion laughs: nine levels of nine aliases, 9**9 = 387 million values once expanded.
SEQUENCE_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)
MAPPING_BOMB = (
    "a: &a {"
    + ", ".join(f"x{i}: 1" for i in range(9))
    + "}\n"
    + "".join(f"{b}: &{b} {{{', '.join(f'k{i}: *{a}' for i in range(9))}}}\n" for a, b in zip("abcdefgh", "bcdefghi"))
)


@pytest.mark.parametrize("bomb", [SEQUENCE_BOMB, MAPPING_BOMB], ids=["sequences", "mappings"])
def test_an_alias_bomb_is_refused_in_a_second(tmp_path, bomb):
    path, first = _tiny_with(tmp_path, "bomb.yaml", bomb)
    with (
        _within(30),
        pytest.raises(
            ConfigError,
            match=(
                rf"^{re.escape(str(path))}: line {first}: more than the 100000 values a configuration may have, its"
                r" aliases expanded \(an alias bomb\?\)$"
            ),
        ),
    ):
        load(path)


def test_a_recursive_alias_is_refused(tmp_path):
    path, first = _tiny_with(tmp_path, "recursive.yaml", "a: &a [1, *a]")
    with (
        _within(30),
        pytest.raises(
            ConfigError,
            match=(
                rf"^{re.escape(str(path))}: line {first}: nested deeper than the 100 levels a configuration may have,"
                r" its aliases expanded \(an alias of a node inside itself\?\)$"
            ),
        ),
    ):
        load(path)


def test_aliases_of_ordinary_size_still_load(tmp_path):
    text = TINY_CONFIG.read_text().replace(
        "    training: {epochs: 1, batch_size: 2}", "    training: &mri {epochs: 1, batch_size: 2}", 1
    )
    text = text.replace("    training: {epochs: 1, batch_size: 2}", "    training: {<<: *mri, val_images: 1}", 1)
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    training = load(path, require_data=False)["tasks"]["brain"]["training"]
    assert (training["epochs"], training["batch_size"], training["val_images"]) == (1, 2, 1)


def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(TINY_CONFIG.read_text() + "own_metrics: {x: " + "[" * 5000 + "]" * 5000 + "}\n")
    line = len(TINY_CONFIG.read_text().splitlines()) + 1
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(path))}: line {line}: nested deeper than the 100 levels a configuration may have$",
    ):
        load(path)
    path.write_text("a: " + "[" * 99 + "]" * 99 + "\n")  # 100 levels with the top mapping
    assert read_yaml(path) is not None


def test_a_file_that_is_not_utf8_is_named_in_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(
        TINY_CONFIG.read_bytes()
        .replace(b"# The smallest", b"seeds: [0]\n# Caf\xe9, the smallest")
        .replace(b"seeds: [0]\ndevice", b"device")
    )
    with pytest.raises(
        ConfigError,
        match=(
            rf"^{re.escape(str(path))}: line 2: not UTF-8 text \(invalid continuation byte at byte 16\); expected a"
            r" YAML file saved as UTF-8$"
        ),
    ):
        load(path)


def test_a_file_too_large_for_a_configuration_is_refused_unread(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (2**20 // 10 + 1))
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: larger than 1 MiB; expected a configuration file \(a few KiB\)$"
    ):
        read_yaml(path)


def test_invalid_yaml_names_the_line_not_the_text(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"seeds: [0]\nsecret: '{SECRET}\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: not valid YAML \(line 3: found unexpected end of stream\)$"
    ):
        read_yaml(path)


def _shared(levels: int) -> list:
    node: list = ["x"] * 9
    for _ in range(levels):
        node = [node] * 9
    return node


@pytest.mark.parametrize(
    "part, message",
    [
        (
            _shared(8),
            (
                r"^tiny\.yaml: losses\.l1\.params\.bomb(\.\d+)+: more than the 100000 values a configuration may have,"
                r" counting each reference to a shared part \(a YAML alias\?\)$"
            ),
        ),
        (
            None,
            (
                r"^tiny\.yaml: losses\.l1\.params\.loop\.loop\.loop\.loop\.loop\.\.\.: nested deeper than the 100"
                r" levels a configuration may have \(a part that contains itself\?\)$"
            ),
        ),
    ],
)
def test_a_configuration_given_as_a_dict_is_bounded_too(tiny_config, part, message):
    # As Snakemake's own loader or a caller of validate() would give it: the aliases already expanded into shared
    # objects.
    if part is None:
        part = {}
        part["loop"] = part
        tiny_config["losses"]["l1"]["params"] = part
    else:
        tiny_config["losses"]["l1"]["params"] = {"bomb": part}
    with _within(30):
        _refused(tiny_config, message)


def test_snakemake_refuses_an_alias_bomb_before_walking_it(tmp_path):
    path, first = _tiny_with(tmp_path, "bomb.yaml", SEQUENCE_BOMB)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--dry-run",
            "--cores",
            "1",
            "--configfile",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = (result.stdout + result.stderr).strip()
    assert (
        result.returncode != 0
        and output.splitlines()[-1]
        == f"Configuration error: {path}: line {first}: more than the 100000 values a configuration may have, its"
        " aliases expanded (an alias bomb?)"
    ), output


def test_command_line_values_are_read_within_the_same_limits():
    from lossbench.pipeline.config import typed_overrides

    # Snakemake leaves nested --config values strings (its BaseLoader); they are read as YAML here.
    with pytest.raises(
        ConfigError, match=r"^--config seeds\.0: line 1: nested deeper than the 100 levels a configuration may have$"
    ):
        typed_overrides({"seeds": ["[" * 5000]})
    with pytest.raises(
        ConfigError,
        match=(
            r"^--config losses\.l1\.params\.a: not valid YAML \(line 1: expected ',' or '\]', but got '<stream end>'\)$"
        ),
    ):
        typed_overrides({"losses": {"l1": {"params": {"a": "[0"}}}})
