"""CPU and memory of a server's whole process tree (sealfn's instances and Ray's workers are
children of the process the benchmark starts)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psutil

_MB = 1 << 20


def tree(pid: int) -> list[psutil.Process]:
    """The process and every live descendant."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system seconds of the tree, including children it has already reaped.

    A process that exits inside a window is counted once its parent reaps it (``children_*``);
    one that exits unreaped is lost, which only the start/stop of instances can cause.
    """
    total = 0.0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def memory(pid: int) -> dict[str, Any]:
    """RSS and PSS summed over the tree, in MB (PSS splits shared pages, so its sum is honest)."""
    rss = pss = 0
    count = 0
    for proc in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = proc.memory_full_info()
            rss += info.rss
            pss += info.pss
            count += 1
    return {"rss_mb": rss / _MB, "pss_mb": pss / _MB, "processes": count}


def system_busy() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all CPUs."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    steal = getattr(t, "steal", 0.0)
    return sum(t) - idle - steal, steal


def wait_quiet(max_s: float, busy_cpus: float = 0.25, step_s: float = 0.5) -> dict[str, Any]:
    """Wait (at most ``max_s``) until the machine uses under ``busy_cpus`` CPUs over ``step_s``.

    Lets a deploy's start-up work (or a neighbour's burst) finish before a window opens.
    """
    began = time.perf_counter()
    if max_s <= 0:
        return {"quiet_wait_s": 0.0, "quiet_cpus": None, "quiet": None}
    while True:
        before = system_busy()[0]
        time.sleep(step_s)
        usage = (system_busy()[0] - before) / step_s
        waited = time.perf_counter() - began
        if usage < busy_cpus or waited >= max_s:
            return {"quiet_wait_s": waited, "quiet_cpus": usage, "quiet": usage < busy_cpus}


class SystemWindow:
    """Machine-wide busy and stolen CPU seconds over the window (to spot a noisy neighbour)."""

    def __init__(self) -> None:
        self._start = (0.0, 0.0)

    def start(self) -> None:
        self._start = system_busy()

    def stop(self) -> dict[str, Any]:
        busy, steal = system_busy()
        return {"machine_busy_cpu_s": busy - self._start[0], "steal_cpu_s": steal - self._start[1]}


class CpuWindow:
    """A loadgen ``Window``: the server tree's CPU seconds per completed request."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = 0.0

    def start(self) -> None:
        self._start = cpu_seconds(self.pid)

    def stop(self) -> dict[str, Any]:
        return {"server_cpu_s": cpu_seconds(self.pid) - self._start}
