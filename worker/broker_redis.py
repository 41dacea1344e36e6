"""kombu's Redis transport, publishing through one client per channel.

kombu's ``redis.Channel.conn_or_acquire()`` builds a new ``redis.Redis`` for every call
that is not handed a client, and ``_put`` / ``_put_fanout`` never hand it one: every task
published and every Flower event a worker sends (received, started, succeeded: six per
invoice) paid for a client object (~0.2 ms of CPU each here: redis-py copies its response
callbacks into every new client). The connection itself always came from the channel's
pool, so nothing but that object is saved: this channel builds its publishing client once,
on the same pool, and hands it out from then on.

Safe to share: a ``redis.Redis`` takes a connection from its pool per command and gives
it back, so two threads publishing at once use two connections, as before; after a fork
redis-py's pool notices the new pid and drops the parent's sockets. A channel that kombu
closes and reopens (a broker restart) is a new ``Channel`` with a new client.

Selected by ``create_app`` for ``redis://`` and ``rediss://`` broker URLs through
Celery's ``broker_transport`` (the URL and every other option stay as they were).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis

TRANSPORT = "worker.broker_redis:Transport"


class Channel(redis.Channel):
    _publisher: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._publisher is None:
            self._publisher = self._create_client()  # type: ignore[attr-defined]  # not in the stubs
        yield self._publisher


class Transport(redis.Transport):
    Channel = Channel
