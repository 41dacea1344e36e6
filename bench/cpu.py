"""CPU time of the processes a bench started, per group, from /proc (Linux).

``CpuMeter`` samples ``utime + stime`` of every process it is told about, once a second,
in a thread: the process groups of a ``LocalStack`` (each child runs in its own session,
so a Celery worker's pool children share its process group), the PostgreSQL backends
serving one database, the Redis server and this process. A process that exits between two
samples loses at most its last second; one that appears later counts from zero. The
sampler's own CPU, and the bench's own watching of the run (``watching``: its database
polls and memory samples), are subtracted from this process's figure.

``cpu_seconds(pid)`` reads one process's ``utime + stime`` (the floor's server shares,
``bench.floor``); ``memory_kb(pid)`` its resident set: VmRSS from ``/proc/<pid>/status``
(shared pages counted in every process that maps them) and Pss from
``/proc/<pid>/smaps_rollup`` (each shared page split among its sharers, so a sum over a
prefork pool counts the pages its children share with their parent once).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")

# (pid, starttime): a pid is reused, a start time is not
Key = tuple[int, int]


def _stat(pid: int) -> tuple[int, int, float] | None:
    """(process group, start time, CPU seconds) of one process; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[2]), int(rest[19]), (int(rest[11]) + int(rest[12])) * TICK_S


def cpu_seconds(pid: int) -> float | None:
    """``utime + stime`` of one process so far (all its threads); None when it is gone."""
    stat = _stat(pid)
    return stat[2] if stat is not None else None


def process_key(pid: int) -> Key | None:
    """(pid, start time): one process, even after its pid is reused."""
    stat = _stat(pid)
    return (pid, stat[1]) if stat is not None else None


def process_group(pgid: int) -> list[int]:
    """Every live process of one process group (a LocalStack child and its pool)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None \
                and stat[0] == pgid:
            found.append(int(entry.name))
    return found


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(VmRSS, Pss) in kB of one process; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for text, field in ((status, "VmRSS:"), (rollup, "Pss:")):
        line = next((ln for ln in text.splitlines() if ln.startswith(field)), None)
        if line is None:
            return None  # a zombie or a kernel thread: no memory of its own
        values[field] = int(line.split()[1])
    return values["VmRSS:"], values["Pss:"]


def find_pids(match: Callable[[str], bool]) -> list[int]:
    """The processes whose command line (NULs as spaces) ``match`` accepts."""
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()
            and match(_cmdline(int(e.name)))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuMeter:
    """``groups(pid, pgid, cmdline) -> group name or None`` decides what is counted."""

    def __init__(self, classify: Callable[[int, int, str], str | None],
                 interval_s: float = 1.0) -> None:
        self._classify = classify
        self._interval_s = interval_s
        self._group: dict[Key, str | None] = {}
        self._first: dict[Key, float] = {}
        self._last: dict[Key, float] = {}
        self._started = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._own_s = 0.0
        self._watching_s = 0.0  # the caller's own watching (``watching``), another thread's

    @contextmanager
    def watching(self) -> Iterator[None]:
        """The calling thread's CPU inside is the bench's own watching of the run (its
        polls of the database, its memory samples): not counted in its process's group,
        as the meter's own sampling is not."""
        t0 = time.thread_time()
        try:
            yield
        finally:
            self._watching_s += time.thread_time() - t0

    @property
    def uncounted_s(self) -> float:
        """This process's CPU seconds left out of its group: the meter's and the watching."""
        return self._own_s + self._watching_s

    def _sample(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _stat(pid)
            if stat is None:
                continue
            pgid, start, cpu = stat
            key = (pid, start)
            if key not in self._group:
                self._group[key] = self._classify(pid, pgid, _cmdline(pid))
                # seen at the first sample: count from here; later: it started meanwhile
                self._first[key] = cpu if not self._started else 0.0
            if self._group[key] is not None:
                self._last[key] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            t0 = time.thread_time()
            self._sample()
            self._own_s += time.thread_time() - t0

    def start(self) -> None:
        t0 = time.thread_time()
        self._sample()
        self._own_s += time.thread_time() - t0
        self._started = True
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since ``start``."""
        self._stop.set()
        self._thread.join()
        t0 = time.thread_time()
        self._sample()
        self._own_s += time.thread_time() - t0
        totals: dict[str, float] = {}
        for key, cpu in self._last.items():
            group = self._group[key]
            if group is not None:
                totals[group] = totals.get(group, 0.0) + cpu - self._first[key]
        me = self._group.get(next((k for k in self._group if k[0] == os.getpid()), (0, 0)))
        if me is not None:
            totals[me] = max(0.0, totals.get(me, 0.0) - self.uncounted_s)
        return totals
