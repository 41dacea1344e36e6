"""The worker's main process freezes its objects before the prefork pool forks a child
(``worker.tasks.freeze_for_fork`` on Celery's ``worker_before_create_process``), so no
collection in the child writes to the pages it shares with the main process."""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Iterator

import pytest
from celery.signals import worker_before_create_process

import worker.tasks  # noqa: F401  (connects the worker's signal handlers)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.collect()


def test_the_signal_before_each_fork_collects_then_freezes() -> None:
    dropped, dropped_ref = cycle()
    kept, kept_ref = cycle()
    del dropped
    worker_before_create_process.send(sender=None)
    assert dropped_ref() is None, "garbage is collected before the freeze, not frozen"
    assert gc.get_freeze_count() > 0
    del kept
    gc.collect()
    assert kept_ref() is not None, "an object alive at the fork is frozen: no collection visits it"


def test_a_forked_child_does_not_collect_what_it_inherited() -> None:
    kept, kept_ref = cycle()
    worker_before_create_process.send(sender=None)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop the inherited cycle and collect everything
        try:
            del kept
            gc.collect()
            os.write(write, b"kept" if kept_ref() is not None else b"collected")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"kept"
