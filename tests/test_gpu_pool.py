"""The lock-file GPU pool with simulated devices: concurrent processes never share a device, locks
follow GPU UUIDs whatever CUDA_VISIBLE_DEVICES calls them, and a real Snakemake run of two GPU jobs at once."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
import yaml

from lossbench.train import device as device_module
from lossbench.train import gpu_pool

from conftest import REPO

HOLD_SECONDS = 0.3
#: The GPUs of a simulated 4-GPU node, as torch's device properties write their UUIDs.
NODE = [
    "6f2a1c3e-0000-4000-8000-000000000000",
    "9b7d5e21-1111-4111-8111-111111111111",
    "c4e8f0a2-2222-4222-8222-222222222222",
    "e1d3b5c7-3333-4333-8333-333333333333",
]


def _hold(lock_dir, uuids, events):
    device = gpu_pool.acquire(uuids, lock_dir, poll_seconds=0.02)
    start = time.monotonic()
    time.sleep(HOLD_SECONDS)
    events.put((device, start, time.monotonic(), os.getpid()))


def _run(target, argument_lists):
    """Start one forked process per argument list, each given a shared queue last; return what they put."""
    context = multiprocessing.get_context("fork")
    events = context.Queue()
    workers = [context.Process(target=target, args=(*arguments, events)) for arguments in argument_lists]
    for worker in workers:
        worker.start()
    records = [events.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    return records


def _disjoint(spans) -> bool:
    spans = sorted(spans)
    return all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


def test_processes_never_share_a_device(tmp_path):
    records = _run(_hold, [(tmp_path, ["GPU-a", "GPU-b"])] * 5)
    assert {device for device, *_ in records} == {0, 1}
    for device in (0, 1):
        spans = [(start, end) for d, start, end, _ in records if d == device]
        assert _disjoint(spans), f"cuda:{device} was shared: {spans}"


def _hold_forever(lock_dir, ready):
    ready.put(gpu_pool.acquire(["GPU-a"], lock_dir))
    time.sleep(60)


def test_a_killed_holder_releases_its_device(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    holder = context.Process(target=_hold_forever, args=(tmp_path, ready))
    holder.start()
    assert ready.get(timeout=30) == 0
    assert (tmp_path / "gpu-a.lock").read_text().strip() == str(holder.pid)
    events = context.Queue()
    waiter = context.Process(target=_hold, args=(tmp_path, ["GPU-a"], events))
    waiter.start()
    time.sleep(0.3)
    assert events.empty(), "the device was handed out while its holder was alive"
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    device, *_ = events.get(timeout=30)
    waiter.join(timeout=30)
    assert device == 0


def _simulate_cuda(allocated: list[str], visible: str) -> list[str]:
    """Make torch.cuda behave as a driver exposing the ``allocated`` GPUs (a SLURM cgroup, or the
    whole node) filtered by ``CUDA_VISIBLE_DEVICES=visible``: indices or ``GPU-`` UUID prefixes.
    Only for a forked child. Returns the set_device calls, filled as they happen."""
    seen = []
    for entry in visible.split(","):
        entry = entry.strip()
        matches = [
            uuid for uuid in allocated if entry.lower().startswith("gpu-") and uuid.startswith(entry[4:].lower())
        ]
        seen.append(allocated[int(entry)] if entry.isdigit() else matches[0])
    calls = []
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: len(seen)
    torch.cuda.get_device_properties = lambda index: SimpleNamespace(uuid=seen[index])
    torch.cuda.set_device = calls.append
    return calls


def _job(lock_dir, allocated, visible, together, events):
    """One training job: select_device("cuda") on the simulated GPUs, then hold the device; with
    ``together`` (a barrier), hold it until every job holds one, which fails if any job waits."""
    calls = _simulate_cuda(allocated, visible)
    device = device_module.select_device("cuda", lock_dir)
    start = time.monotonic()
    if together is None:
        time.sleep(HOLD_SECONDS)
    else:
        together.wait(timeout=20)
    assert calls == [device]
    events.put((visible, device.index, start, time.monotonic(), sorted(path.name for path in lock_dir.iterdir())))


def _together(parties: int):
    return multiprocessing.get_context("fork").Barrier(parties)


def test_two_slurm_allocations_on_one_node_do_not_block_each_other(tmp_path):
    # Each allocation has two GPUs of the node, renumbered "0,1" inside it; two jobs per allocation,
    # all four holding their GPU at once.
    together = _together(4)
    records = _run(_job, [(tmp_path, NODE[:2], "0,1", together)] * 2 + [(tmp_path, NODE[2:], "0,1", together)] * 2)
    assert sorted(index for _, index, *_ in records) == [0, 0, 1, 1]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(gpu_pool.lock_name(uuid) for uuid in NODE)


def test_index_and_uuid_forms_of_one_gpu_share_its_lock(tmp_path):
    # A workstation: one job sees GPU 1 by index, the other by its UUID, as nvidia-smi writes it.
    records = _run(_job, [(tmp_path, NODE, "1", None), (tmp_path, NODE, f"GPU-{NODE[1][:8].upper()}", None)])
    assert [index for _, index, *_ in records] == [0, 0]
    assert _disjoint([(start, end) for _, _, start, end, _ in records]), "one GPU was held by two jobs at once"
    assert [path.name for path in tmp_path.iterdir()] == [gpu_pool.lock_name(NODE[1])]


def test_an_exported_list_of_several_gpus_still_spreads_jobs(tmp_path):
    # One CUDA_VISIBLE_DEVICES exported on a workstation, inherited by both gpu=2 jobs.
    records = _run(_job, [(tmp_path, NODE, "2,3", _together(2))] * 2)
    assert sorted(index for _, index, *_ in records) == [0, 1]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(gpu_pool.lock_name(uuid) for uuid in NODE[2:])


def test_lock_names_ignore_the_gpu_prefix_and_case():
    assert gpu_pool.lock_name("GPU-6F2A1C3E-0000") == gpu_pool.lock_name("6f2a1c3e-0000") == "gpu-6f2a1c3e-0000.lock"
    assert gpu_pool.lock_name("MIG-1/2/3") == "gpu-mig-1_2_3.lock"
    with pytest.raises(ValueError, match="repeat a UUID"):
        gpu_pool.acquire(["GPU-a", "a"])
    with pytest.raises(ValueError, match="no visible GPU"):
        gpu_pool.acquire([])


#: One Snakemake job on the simulated pool: takes a GPU through select_device, records it, and holds
#: it until the other job has one too (a file each), so that jobs run one after the other fail.
_SNAKEMAKE_JOB = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_gpu_pool import NODE, _simulate_cuda
from lossbench.train.device import select_device, visible_gpu_uuids

name, partner, out = sys.argv[1:4]
_simulate_cuda(NODE[:2], "0,1")
device = select_device("cuda", "locks")
start = time.monotonic()
Path(name + ".holding").touch()
deadline = start + 20
while not Path(partner + ".holding").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
seen = Path(partner + ".holding").exists()
record = {{"gpu": visible_gpu_uuids()[device.index], "start": start, "end": time.monotonic(), "partner_seen": seen}}
Path(out).write_text(json.dumps(record))
"""

_SNAKEFILE = """
rule all:
    input: "train.json", "infer.json"

rule train:
    output: "train.json"
    threads: {threads}
    resources: gpu=1
    shell: "{python} job.py train infer {{output}}"

rule infer:
    output: "infer.json"
    threads: {threads}
    resources: gpu=1
    shell: "{python} job.py infer train {{output}}"
"""


def test_snakemake_runs_two_gpu_jobs_at_once_on_two_gpus(tmp_path):
    # Item 1 of issue 14: `--cores 8 --resources gpu=2` with the thesis configuration's threads per job
    # must run two GPU jobs together, each on its own GPU (a real Snakemake run, GPUs simulated).
    threads = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["threads"]
    (tmp_path / "job.py").write_text(_SNAKEMAKE_JOB.format(tests=str(REPO / "tests")))
    (tmp_path / "Snakefile").write_text(_SNAKEFILE.format(threads=threads, python=sys.executable))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "8",
        "--resources",
        "gpu=2",
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(tmp_path / "Snakefile"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    train, infer = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("train", "infer"))
    assert train["partner_seen"] and infer["partner_seen"], "Snakemake ran the two GPU jobs one after the other"
    assert max(train["start"], infer["start"]) < min(train["end"], infer["end"])
    assert {train["gpu"], infer["gpu"]} == set(NODE[:2])


class _Resources(dict):
    """A Snakemake job's resources as the SLURM plugin reads them: ``.get`` and attributes."""

    __getattr__ = dict.__getitem__


def test_the_slurm_profile_asks_for_the_cpus_its_gpu_jobs_use():
    # Two jobs per two GPUs need the CPUs they use, not more: profiles/slurm leaves the CPU request to
    # the plugin, which takes the job's threads (config/paper.yaml's) unless cpus_per_task is set.
    jobstep = pytest.importorskip("snakemake_executor_plugin_slurm_jobstep")
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    threads = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["threads"]
    for rule in ("train", "infer"):
        resources = _Resources(profile["set-resources"][rule])
        assert resources["gpu"] == 1
        job = SimpleNamespace(threads=threads, resources=resources)
        assert jobstep.get_cpu_setting(job, gpu=True) == f"--cpus-per-task={threads}", rule
