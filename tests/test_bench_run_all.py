"""bench/run_all.py (`make bench`): --help runs nothing, and every script it runs takes the --out it passes."""

import importlib.util
import subprocess
import sys

from conftest import REPO

RUN_ALL = REPO / "bench" / "run_all.py"


def _run_all_module():
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_prints_usage_and_runs_no_benchmark():
    before = sorted(path.name for path in (REPO / "bench").iterdir())
    done = subprocess.run([sys.executable, str(RUN_ALL), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: python bench/run_all.py"), done.stdout + done.stderr
    assert "== " not in done.stdout and "By hand only: flip_loss.py" in done.stdout
    assert sorted(path.name for path in (REPO / "bench").iterdir()) == before


def test_every_script_it_runs_accepts_out_and_the_by_hand_ones_exist():
    module = _run_all_module()
    assert all((REPO / "bench" / name).is_file() for name in module.BY_HAND)
    for script in module.scripts():
        done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--out" in done.stdout, f"{script.name} --help:\n{done.stdout}{done.stderr}"
