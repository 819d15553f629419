"""The lock-file GPU pool with simulated devices: concurrent processes never share a device."""

import multiprocessing
import os
import signal
import time

import pytest

from lossbench import gpu_pool

HOLD_SECONDS = 0.3


def _hold(lock_dir, count, visible, events):
    device = gpu_pool.acquire(count, visible, lock_dir, poll_seconds=0.02)
    start = time.monotonic()
    time.sleep(HOLD_SECONDS)
    events.put((device, start, time.monotonic(), os.getpid()))


def test_processes_never_share_a_device(tmp_path):
    context = multiprocessing.get_context("fork")
    events = context.Queue()
    workers = [context.Process(target=_hold, args=(tmp_path, 2, None, events)) for _ in range(5)]
    for worker in workers:
        worker.start()
    records = [events.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert {device for device, *_ in records} == {0, 1}
    for device in (0, 1):
        spans = sorted((start, end) for d, start, end, _ in records if d == device)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), f"cuda:{device} was shared: {spans}"


def _hold_forever(lock_dir, ready):
    ready.put(gpu_pool.acquire(1, None, lock_dir))
    time.sleep(60)


def test_a_killed_holder_releases_its_device(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    holder = context.Process(target=_hold_forever, args=(tmp_path, ready))
    holder.start()
    assert ready.get(timeout=30) == 0
    assert (tmp_path / "gpu-0.lock").read_text().strip() == str(holder.pid)
    events = context.Queue()
    waiter = context.Process(target=_hold, args=(tmp_path, 1, None, events))
    waiter.start()
    time.sleep(0.3)
    assert events.empty(), "the device was handed out while its holder was alive"
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    device, *_ = events.get(timeout=30)
    waiter.join(timeout=30)
    assert device == 0


def test_visible_devices_name_the_lock_files(tmp_path):
    context = multiprocessing.get_context("fork")
    events = context.Queue()
    worker = context.Process(target=_hold, args=(tmp_path, 2, "3,GPU-abc", events))
    worker.start()
    assert events.get(timeout=30)[0] == 0
    worker.join()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gpu-3.lock"]
    assert gpu_pool.device_ids(2, None) == ["0", "1"]
    assert gpu_pool.device_ids(2, "4, 6,7") == ["4", "6"]
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES='5': names 1 devices but 2 are visible"):
        gpu_pool.device_ids(2, "5")


def test_a_scheduler_placed_job_takes_its_one_device_without_a_lock(tmp_path):
    assert gpu_pool.acquire(1, "2", tmp_path / "locks") == 0
    assert not (tmp_path / "locks").exists()
