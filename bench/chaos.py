"""Chaos run: the whole pipeline under load and faults, then proof from the records.

    python -m bench.chaos [--count 1000] [--workers 2] [--concurrency 2] [--seconds 60]
                          [--embedded] [--seed N] [--data-dir DIR] [--broker redis|rabbitmq]

It starts a LocalStack (the Finkok and SIF sandboxes, N Celery workers and the beat as
real processes) on PostgreSQL + Redis when they answer (a throwaway database and a
Redis server of its own, so it may restart it), else on the embedded default (SQLite +
the filesystem broker). Then, for ``--seconds``:

* Finkok answers late (latency with jitter), hangs past the client's read timeout on
  10 % of calls, answers HTTP 500 on 5 %, stamps and then drops the connection on 5 %,
  and forgets what it stamped (``guard_307=False``: a second stamp of one document gets
  a second UUID, so any double stamp by the worker is visible);
* SIF answers 5xx on 20 % of PUTs, 404 on some, drops or hangs a few;
* a random worker is killed with SIGKILL every few seconds and started again, the
  broker is restarted once, and every database connection is terminated once;
* the invoices (sealed up front, some bound to be rejected with CFDI40143) are enqueued
  through intake while all this goes on.

With ``--broker rabbitmq`` the broker is the RabbitMQ at BILLING_TEST_RABBITMQ_URL, in a
vhost of the run's own (quorum queues, publisher confirms: worker/celery_app.py), and the
broker fault closes every client connection of that vhost on the server (rabbitmqctl
close_connection, ``close_rabbitmq_connections``) instead of killing a Redis.

Then the faults stop, and the run waits until every invoice is settled and SIF heard
about it (``settle_s`` counts from the moment the faults stopped). The checks read the
sandboxes' own records and the database, never the worker's opinion of itself. The last
line is ``RESULT double_stamps=0 unsettled=0 undelivered=0 conflicting=0 xml_mismatch=0
secrets_in_logs=0 settle_s=...``; the exit code is 1 when a must-be-zero figure is not
zero or an invoice ended in an outcome its scenario does not allow.

Timing rule the settings below respect: a hung Finkok call is processed ``hang_s`` after
it arrived. An ambiguous retry comes at least ``stamp_backoff_base_s / 2`` after the
client gave up, and a dead worker's invoice is taken over only after its lease, so both
come after the hung call was processed. Against a PAC that processes a call later than
that, only the PAC's own 307 guard prevents a second stamp: tests/chaos shows it with a
retry sooner than the hung call (the negative control the checks must catch).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx

from worker.stack import QUEUES, LocalStack, free_port, wait_until

EMPRESA = "00000000-0000-1000-0000-00000000c4a0"
NORMAL_RFC = "URE180429TM6"
REJECT_RFC = "RJE010101AB1"
REJECT_CODE = "CFDI40143"
REJECT_EVERY = 20  # one invoice in 20 is bound to be rejected
TERMINAL = ("stamped", "rejected", "failed")
MUST_BE_ZERO = (
    "double_stamps", "unsettled", "undelivered", "conflicting", "xml_mismatch", "secrets_in_logs",
)

# Finkok read timeout 2 s, hangs of 3 s: every hang outlasts the client. Ambiguous retries
# wait >= base/2 = 1.5 s after the timeout (the hung call is processed 1 s + latency after
# it), and a dead worker's lease (8 s) outlasts any call it was making.
FINKOK_READ_TIMEOUT_S = 2.0
FINKOK_HANG_S = 3.0
FINKOK_FAULTS: dict[str, Any] = {
    "latency_ms": 40.0, "jitter_ms": 30.0, "hang_rate": 0.10, "hang_s": FINKOK_HANG_S,
    "fault_rate": 0.05, "drop_rate": 0.05,
}
FINKOK_CLEAN: dict[str, Any] = {
    "latency_ms": 0.0, "jitter_ms": 0.0, "hang_rate": 0.0, "fault_rate": 0.0, "drop_rate": 0.0,
}
SIF_HANG_S = 3.0
SIF_FAULTS: dict[str, Any] = {
    "error_rate": 0.20, "not_found_rate": 0.05, "drop_rate": 0.03, "hang_rate": 0.02,
    "hang_s": SIF_HANG_S, "latency_s": 0.01,
}
SIF_CLEAN: dict[str, Any] = {
    "error_rate": 0.0, "not_found_rate": 0.0, "drop_rate": 0.0, "hang_rate": 0.0, "latency_s": 0.0,
}
PIPELINE_ENV = {
    "BILLING_FINKOK_READ_TIMEOUT_S": str(FINKOK_READ_TIMEOUT_S),
    "BILLING_FINKOK_CONNECT_TIMEOUT_S": "2",
    "BILLING_STAMP_MAX_ATTEMPTS": "40",
    "BILLING_STAMP_BACKOFF_BASE_S": "3",
    "BILLING_STAMP_BACKOFF_MAX_S": "6",
    "BILLING_CLAIM_LEASE_S": "8",
    "BILLING_SWEEP_INTERVAL_S": "2",
    # A doorbell lost in a kill or a broker restart is re-rung after this (default 60 s).
    "BILLING_SWEEP_RERING_AFTER_S": "15",
    "BILLING_PENDING_POLL_INTERVAL_S": "1",
    "BILLING_SIF_READ_TIMEOUT_S": "2",
    "BILLING_SIF_CONNECT_TIMEOUT_S": "2",
    "BILLING_NOTIFY_MAX_ATTEMPTS": "40",
    "BILLING_NOTIFY_BACKOFF_BASE_S": "0.5",
    "BILLING_NOTIFY_BACKOFF_MAX_S": "3",
    # A run of random faults may open a breaker: probe soon, so held rows resume quickly.
    "BILLING_BREAKER_PROBE_S": "2",
}
DEFAULT_POSTGRES_URL = os.environ.get(
    "BILLING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
DEFAULT_REDIS_URL = os.environ.get("BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DEFAULT_RABBITMQ_URL = os.environ.get("BILLING_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class ChaosOptions:
    count: int = 1000
    workers: int = 2
    concurrency: int = 2
    seconds: float = 60.0  # the fault phase
    kill_every_s: float = 5.0  # 0: no kills
    restarts: bool = True  # restart the broker and drop the database connections once
    backend: str = "auto"  # auto (servers when they answer) / embedded / servers
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL  # used only when no redis-server binary is at hand
    settle_timeout_s: float = 600.0
    seed: int | None = None
    data_dir: Path | None = None  # default: a new folder under the system temp dir
    # BILLING_* values over PIPELINE_ENV, e.g. to show what the checks see when a
    # timing rule above is broken.
    settings_env: dict[str, str] = field(default_factory=dict)
    finkok_faults: dict[str, Any] = field(default_factory=dict)  # over FINKOK_FAULTS
    normal_rules: list[str] = field(default_factory=list)  # Finkok rules for normal invoices
    broker: str = "redis"  # with the servers: "redis" or "rabbitmq" (a vhost of the run's own)

    @property
    def finkok(self) -> dict[str, Any]:
        return {**FINKOK_FAULTS, **self.finkok_faults}


@dataclass(frozen=True)
class Planned:
    reference: str
    xml: bytes
    expect: str  # the invoice's only acceptable final state: stamped / rejected


@dataclass
class ChaosReport:
    figures: dict[str, float]
    backend: str
    rows: list[tuple[str, str, str]]  # (what, value, note) for the human table
    findings: list[str]
    notes: list[str]
    data_dir: Path
    unexpected: int = 0  # invoices in a final state their scenario does not allow
    kills: int = 0
    events: list[str] = field(default_factory=list)  # restarts, and what they did
    finkok_events: dict[str, int] = field(default_factory=dict)  # hang / fault / drop counts
    states: dict[str, int] = field(default_factory=dict)  # final invoice states
    # A scenario's own figures after the common ones: (key, must be zero).
    extra: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        zeros = [*MUST_BE_ZERO, *(k for k, must in self.extra if must)]
        return all(self.figures[k] == 0 for k in zeros) and self.unexpected == 0

    def result_line(self) -> str:
        zero = " ".join(f"{k}={int(self.figures[k])}" for k in MUST_BE_ZERO)
        extra = "".join(f" {k}={self.figures[k]:g}" for k, _ in self.extra)
        return f"RESULT {zero}{extra} settle_s={self.figures['settle_s']:.1f}"


# --- the invoices ------------------------------------------------------------------------


def plan_invoices(count: int, run_id: str) -> list[Planned]:
    """Fresh sealed invoices, made before anything starts (about 6 ms each)."""
    from worker.cfdi.factory import build_invoice

    out = []
    for i in range(count):
        reject = i % REJECT_EVERY == REJECT_EVERY // 2
        xml = build_invoice(folio=f"{run_id}{i}", receptor_rfc=REJECT_RFC if reject else NORMAL_RFC,
                            receptor_nombre=f"CLIENTE CAOS {i}")
        out.append(Planned(f"CHAOS-{run_id}-{i:05d}", xml, "rejected" if reject else "stamped"))
    return out


# --- backends: what the run may restart ------------------------------------------------------


class Broker:
    url = "filesystem://"

    def __init__(self, queue_folder: Path | None = None) -> None:
        self.queue_folder = queue_folder  # the filesystem broker's messages

    def restart(self) -> str:
        return "embedded filesystem broker: there is no broker server to restart"

    def waiting(self) -> int:
        """Messages waiting in the broker's queues (doorbells not yet taken)."""
        return len(list(self.queue_folder.glob("*.msg"))) if self.queue_folder else 0

    def close(self) -> None:
        pass


class OwnRedis(Broker):
    """A redis-server of this run's own (AOF on, no RDB), so it may be killed and restarted."""

    def __init__(self, folder: Path, log: Path) -> None:
        super().__init__()
        self.folder, self.log = folder, log
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._start()

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--dir", str(self.folder),
             "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        if not wait_until(lambda: bool(client.ping()), 15):
            raise RuntimeError(f"redis-server did not start: see {self.log}")

    def restart(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        time.sleep(1.0)  # clients see it down for a moment
        started = time.monotonic()
        self._start()
        return (f"own redis-server killed (SIGKILL) and restarted from its AOF on port "
                f"{self.port} (back in {time.monotonic() - started:.1f} s)")

    def waiting(self) -> int:
        return _redis_waiting(self.url)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ExternalRedis(Broker):
    def __init__(self, url: str) -> None:
        import redis

        super().__init__()
        self.url = url
        redis.Redis.from_url(url).flushdb()

    def restart(self) -> str:
        return f"Redis at {self.url} is not this run's own server: not restarted"

    def waiting(self) -> int:
        return _redis_waiting(self.url)


def _redis_waiting(url: str) -> int:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        return sum(int(client.llen(q)) for q in QUEUES.split(","))
    except redis.RedisError:
        return 0


class RabbitBroker(Broker):
    """A vhost of this run's own on the RabbitMQ at ``server_url``, deleted at the end."""

    def __init__(self, server_url: str) -> None:
        from bench.rabbitmq import RabbitVhost

        super().__init__()
        self.vhost = RabbitVhost(server_url, prefix="billing_chaos").create()
        self.url = self.vhost.url

    def restart(self) -> str:
        return close_rabbitmq_connections(self.vhost)

    def waiting(self) -> int:
        return self.vhost.waiting(QUEUES.split(",") + ["intake"])

    def close(self) -> None:
        self.vhost.delete()


def close_rabbitmq_connections(vhost: Any) -> str:
    """The RabbitMQ broker fault: the server closes every client connection of the run's
    vhost (workers' consumers, beat, producers), as a node restart or a dropped load
    balancer would; the queues and their messages stay. Clients reconnect on their own."""
    started = time.monotonic()
    closed = vhost.close_connections()
    return (f"RabbitMQ: closed {closed} connections of vhost {vhost.name} "
            f"(rabbitmqctl close_connection, {time.monotonic() - started:.1f} s)")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url

    def drop_connections(self) -> str:
        return "SQLite: no database server, no connection to terminate"

    def close(self) -> None:
        pass


class ThrowawayPostgres(Database):
    """A fresh database on the server, dropped at the end."""

    def __init__(self, server_url: str) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        base = make_url(server_url)
        self.admin = psycopg.connect(base.set(drivername="postgresql").render_as_string(False),
                                     autocommit=True, connect_timeout=3)
        self.name = f"billing_chaos_{uuid.uuid4().hex[:10]}"
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        super().__init__(base.set(database=self.name).render_as_string(False))

    def drop_connections(self) -> str:
        row = self.admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,),
        ).fetchone()
        return f"PostgreSQL: terminated {row[0] if row else 0} connections to {self.name}"

    def close(self) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()


def servers_reachable(opts: ChaosOptions) -> str | None:
    """None when PostgreSQL and a Redis (own binary or the URL) are at hand, else why not."""
    import psycopg
    import redis
    from sqlalchemy.engine import make_url

    try:
        url = make_url(opts.postgres_url).set(drivername="postgresql").render_as_string(False)
        psycopg.connect(url, connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL at {opts.postgres_url}: {str(exc).strip().splitlines()[0]}"
    if opts.broker == "rabbitmq":
        from bench.rabbitmq import broker_answers

        why = broker_answers(DEFAULT_RABBITMQ_URL)
        return f"RabbitMQ at {_mask(DEFAULT_RABBITMQ_URL)}: {why}" if why else None
    if shutil.which("redis-server"):
        return None
    try:
        redis.Redis.from_url(opts.redis_url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return f"no redis-server binary and Redis at {opts.redis_url}: {exc}"
    return None


@contextmanager
def open_backends(opts: ChaosOptions, data_dir: Path) -> Iterator[tuple[str, Database, Broker]]:
    kind = opts.backend
    if kind == "auto":
        why = servers_reachable(opts)
        kind = "embedded" if why else "servers"
        if why:
            print(f"servers not reachable ({why}): the embedded default")
    if kind == "embedded":
        yield (kind, Database(f"sqlite:///{data_dir / 'billing.db'}"),
               Broker(data_dir / "broker" / "queue"))
        return
    why = servers_reachable(opts)
    if why:
        raise RuntimeError(f"servers requested but not reachable: {why}")
    database = ThrowawayPostgres(opts.postgres_url)
    broker: Broker | None = None
    try:
        if opts.broker == "rabbitmq":
            broker = RabbitBroker(DEFAULT_RABBITMQ_URL)
        else:
            broker = (OwnRedis(data_dir / "redis", data_dir / "logs" / "redis.log")
                      if shutil.which("redis-server") else ExternalRedis(opts.redis_url))
        yield kind, database, broker
    finally:
        if broker is not None:
            broker.close()
        database.close()


# --- the run -------------------------------------------------------------------------------


@dataclass
class Chaos:
    """What happened during the fault phase."""

    kills: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    intake: Counter[str] = field(default_factory=Counter)
    enqueued: int = 0
    log_offsets: dict[int, int] = field(default_factory=dict)  # worker -> log size at start
    max_waiting: int = 0  # most messages seen waiting in the broker
    at_fault_stop: str = ""  # invoice states when the faults stopped


def run_chaos(opts: ChaosOptions, *, say: Callable[[str], None] = print) -> ChaosReport:
    """The whole run: start, enqueue under faults, stop the faults, settle, check."""
    rng = random.Random(opts.seed)
    run_id = uuid.uuid4().hex[:6]
    data_dir = (opts.data_dir or Path(tempfile.mkdtemp(prefix="billing-chaos-"))).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    planned = plan_invoices(opts.count, run_id)
    say(f"sealed {len(planned)} invoices in {time.monotonic() - started:.1f} s; data in {data_dir}")
    finkok_password = f"chaos-fk-{secrets.token_hex(10)}"
    sif_secret = f"chaos-sif-{secrets.token_hex(10)}"

    with open_backends(opts, data_dir) as (backend, database, broker):
        stack = LocalStack(
            data_dir, database_url=database.url, broker_url=broker.url,
            workers=opts.workers, concurrency=opts.concurrency,
            finkok_config={"guard_307": False, "seed": opts.seed,
                           "rules": {REJECT_RFC: [f"reject:{REJECT_CODE}"],
                                     NORMAL_RFC: list(opts.normal_rules)}},
            settings_env={**PIPELINE_ENV, **opts.settings_env,
                          "BILLING_FINKOK_PASSWORD": finkok_password,
                          "BILLING_SIF_SECRET": sif_secret},
        )
        say(f"backend: {backend} (database {_mask(database.url)}, broker {_mask(broker.url)})")
        try:
            stack.start()
            if opts.seed is not None:
                stack.sif_configure(seed=opts.seed)
            _wait_ready(stack, opts.workers)
            chaos, settle_s, settled = _fault_and_settle(stack, opts, planned, database, broker,
                                                         rng, say)
            waiting = broker.waiting()  # left when everything settled: stale doorbells
            for i in range(opts.workers):  # nothing may act while the records are read
                stack.kill(f"worker{i}")
            stack.kill("beat")
            # Calls still hung at the sandboxes end (and may stamp) before anything is read.
            time.sleep(max(float(opts.finkok["hang_s"]), SIF_HANG_S) + 1.0)
            report = _check(stack, planned, chaos, settle_s, settled, backend,
                            [finkok_password, sif_secret], data_dir)
            report.rows.insert(-1 - len(MUST_BE_ZERO) - 1, (
                "broker messages waiting", f"max {chaos.max_waiting}",
                f"{waiting} left when all had settled (duplicate doorbells)"))
        finally:
            stack.stop()
    return report


def _mask(url: str) -> str:
    from worker.settings import mask_url_password

    return mask_url_password(url)


def _wait_ready(stack: LocalStack, workers: int) -> None:
    for i in range(workers):
        log = stack.logs / f"worker{i}.log"
        if not wait_until(partial(_logged, log, " ready."), 60, 0.2):
            raise RuntimeError(f"worker{i} did not get ready: see {log}")


def _logged(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def _fault_and_settle(
    stack: LocalStack,
    opts: ChaosOptions,
    planned: list[Planned],
    database: Database,
    broker: Broker,
    rng: random.Random,
    say: Callable[[str], None],
) -> tuple[Chaos, float, bool]:
    from worker.celery_app import create_app
    from worker.db.session import create_db_engine, session_factory

    settings = stack.settings()
    engine = create_db_engine(settings.database_url, pool_size=2)
    sessions = session_factory(engine)
    chaos = Chaos()
    try:
        stack.finkok_configure(**opts.finkok)
        stack.sif_configure(**SIF_FAULTS)
        t0 = time.monotonic()
        say(f"fault phase: {opts.seconds:.0f} s")
        producer = threading.Thread(
            target=_enqueue, name="chaos-producer", daemon=True,
            args=(sessions, create_app(settings), planned, opts.seconds * 0.4, chaos),
        )
        producer.start()
        every = opts.kill_every_s
        next_kill = t0 + every if every > 0 else float("inf")
        broker_at = t0 + opts.seconds * 0.3 if opts.restarts else 0.0  # while enqueuing
        # Just before a kill, when the workers have been up a while and hold connections.
        kills_before = round(opts.seconds * 0.6 / every) if every > 0 else 0
        database_at = (t0 + kills_before * every - 0.3 if kills_before >= 1
                       else t0 + opts.seconds * 0.6) if opts.restarts else 0.0
        while (now := time.monotonic()) < t0 + opts.seconds:
            if now >= next_kill:
                # Only a worker that is up and consuming, so the kill lands mid-work; when
                # none is ready yet (they boot slowly on a busy machine), wait for one.
                ready = [i for i in range(opts.workers) if _is_ready(stack, i, chaos)]
                if ready:
                    victim = rng.choice(ready)
                    _restart_worker(stack, victim, chaos)
                    chaos.kills.append(f"worker{victim}@{now - t0:.1f}s")
                    next_kill = now + every
            if broker_at and now >= broker_at:
                broker_at = 0.0
                chaos.events.append(f"@{now - t0:.1f}s {broker.restart()}")
                say(chaos.events[-1])
            if database_at and now >= database_at:
                database_at = 0.0
                chaos.events.append(f"@{now - t0:.1f}s {database.drop_connections()}")
                say(chaos.events[-1])
            _restart_dead(stack, opts.workers, chaos)
            chaos.max_waiting = max(chaos.max_waiting, broker.waiting())
            time.sleep(0.2)
        producer.join()  # the producer paces itself within the first 40 % of the phase
        stack.finkok_configure(**FINKOK_CLEAN)
        stack.sif_configure(**SIF_CLEAN)
        stopped = time.monotonic()
        chaos.at_fault_stop = _progress(sessions)
        say(f"faults stopped after {stopped - t0:.1f} s ({len(chaos.kills)} kills); settling")
        say(f"  {chaos.at_fault_stop}")

        def each_round() -> str:
            _restart_dead(stack, opts.workers, chaos)
            chaos.max_waiting = max(chaos.max_waiting, broker.waiting())
            return f"; {broker.waiting()} messages in the broker"

        settled = wait_settled(sessions, len(planned), opts.settle_timeout_s, say, each_round)
        return chaos, time.monotonic() - stopped, settled
    finally:
        engine.dispose()


def _restart_worker(stack: LocalStack, index: int, chaos: Chaos) -> None:
    name = f"worker{index}"
    stack.kill(name)  # SIGKILL to the process group: the main process and its pool
    log = stack.logs / f"{name}.log"
    chaos.log_offsets[index] = log.stat().st_size if log.exists() else 0
    stack.start_worker(index)


def _is_ready(stack: LocalStack, index: int, chaos: Chaos) -> bool:
    """The worker's current process said "ready." (its log since its last start)."""
    try:
        with (stack.logs / f"worker{index}.log").open("rb") as f:
            f.seek(chaos.log_offsets.get(index, 0))
            return b" ready." in f.read()
    except OSError:
        return False


def _restart_dead(stack: LocalStack, workers: int, chaos: Chaos) -> None:
    """A process that died without being killed is a finding; it is started again."""
    for name in [f"worker{i}" for i in range(workers)] + ["beat"]:
        proc = stack.processes.get(name)
        if proc is not None and proc.poll() is not None:
            chaos.events.append(f"{name} exited by itself (code {proc.returncode}); restarted")
            if name == "beat":
                stack.start_beat()
            else:
                _restart_worker(stack, int(name.removeprefix("worker")), chaos)


def _enqueue(sessions: Any, app: Any, planned: list[Planned], window_s: float, chaos: Chaos) -> None:
    """Intake in batches spread over the window; a batch hit by a dropped database
    connection is simply submitted again (intake is idempotent per reference)."""
    from worker.celery_app import STAMP_TASK
    from worker.doorbell import bell_for
    from worker.invoices.intake import Submission, SubmitResult, submit_many

    batch = 25
    chunks = [planned[i : i + batch] for i in range(0, len(planned), batch)]
    t0 = time.monotonic()
    for n, chunk in enumerate(chunks):
        pause = t0 + n * window_s / len(chunks) - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        items = [Submission(p.xml, EMPRESA, p.reference, f"P{p.reference[-5:]}") for p in chunk]
        for _attempt in range(10):
            try:
                results = submit_many(sessions, items,
                                      publish=bell_for(app, STAMP_TASK))
                break
            except Exception as exc:  # noqa: BLE001 - e.g. the terminated connection
                chaos.intake[f"batch retried ({type(exc).__name__})"] += 1
                time.sleep(0.5)
        else:
            chaos.intake["batch lost"] += 1
            continue
        for result in results:
            if isinstance(result, SubmitResult):
                chaos.intake[result.outcome] += 1
                chaos.intake["published" if result.published else "not published"] += 1
            else:
                chaos.intake[f"refused ({getattr(result, 'reason', 'conflict')})"] += 1
        chaos.enqueued += len(chunk)


def wait_settled(sessions: Any, count: int, timeout_s: float, say: Callable[[str], None],
                 each_round: Callable[[], str] = lambda: "") -> bool:
    """Poll until every invoice is final and SIF holds each outcome (or the timeout);
    ``each_round`` runs every round and adds to the progress line said every 15 s."""
    deadline = time.monotonic() + timeout_s
    last_note = time.monotonic()
    while time.monotonic() < deadline:
        extra = each_round()
        if _settled(sessions, count):
            return True
        if time.monotonic() - last_note > 15:
            last_note = time.monotonic()
            say(f"  {_progress(sessions)}{extra}")
        time.sleep(0.5)
    return False


def _settled(sessions: Any, count: int) -> bool:
    from sqlalchemy import func, select

    from worker.db.models import Invoice, Notification

    with sessions() as s:
        total = s.scalar(select(func.count()).select_from(Invoice))
        done = s.scalar(select(func.count()).select_from(Invoice)
                        .where(Invoice.state.in_(TERMINAL)))
        open_ = s.scalar(select(func.count()).select_from(Notification)
                         .where(Notification.state.not_in(("delivered", "failed"))))
    return bool(total == count and done == count and open_ == 0)


def _progress(sessions: Any) -> str:
    from sqlalchemy import func, select

    from worker.db.models import Invoice, Notification

    with sessions() as s:
        inv = dict(s.execute(select(Invoice.state, func.count()).group_by(Invoice.state)).all())
        notif = dict(s.execute(select(Notification.state, func.count())
                               .group_by(Notification.state)).all())
    return f"invoices {_fmt(inv)}; notifications {_fmt(notif)}"


def _fmt(counts: dict[Any, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))


# --- the checks -------------------------------------------------------------------------------


def finkok_xml(base_url: str, username: str, password: str, sat_uuid: str, taxpayer: str,
               client: httpx.Client) -> str | None:
    """The stamped XML the Finkok sandbox holds for a UUID, by a raw SOAP get_xml call
    (no zeep, none of the worker's code: an independent reading)."""
    from lxml import etree

    envelope = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:u="http://facturacion.finkok.com/utilities"><soapenv:Body><u:get_xml>'
        f"<u:username>{escape(username)}</u:username><u:password>{escape(password)}</u:password>"
        f"<u:uuid>{escape(sat_uuid)}</u:uuid><u:taxpayer_id>{escape(taxpayer)}</u:taxpayer_id>"
        "<u:invoice_type>I</u:invoice_type></u:get_xml></soapenv:Body></soapenv:Envelope>"
    )
    reply = client.post(f"{base_url}/servicios/soap/utilities", content=envelope.encode(),
                        headers={"Content-Type": "text/xml; charset=utf-8"})
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(reply.content, parser)
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == "xml" and el.text:
            return str(el.text)
    return None


def _check(
    stack: LocalStack,
    planned: list[Planned],
    chaos: Chaos,
    settle_s: float,
    settled: bool,
    backend: str,
    secret_values: list[str],
    data_dir: Path,
) -> ChaosReport:
    from sqlalchemy import select

    from worker.db.models import Invoice, Notification
    from worker.db.session import create_db_engine, session_factory

    settings = stack.settings()
    expect = {p.reference: p.expect for p in planned}
    findings: list[str] = []
    notes: list[str] = []

    # The Finkok sandbox's ledger: UUIDs per document.
    finkok = stack.finkok_stats()
    doubles = [d for d in finkok["documents"] if len(d["uuids"]) > 1]
    double_uuids = {u for d in doubles for u in d["uuids"]}

    # The database.
    engine = create_db_engine(settings.database_url, pool_size=2)
    try:
        sessions = session_factory(engine)
        with sessions() as s:
            invoices = {inv.reference: inv for inv in s.scalars(
                select(Invoice).where(Invoice.empresa_ref_id == EMPRESA))}
            notifications: dict[str, list[Notification]] = {}
            for n in s.scalars(select(Notification).order_by(Notification.created_at)):
                notifications.setdefault(n.invoice_id, []).append(n)
            s.expunge_all()
        secrets_in_db = _secrets_in_db(engine, secret_values)
    finally:
        engine.dispose()

    # What SIF received and accepted.
    received = stack.sif_received()
    statuses: dict[str, list[str]] = {k.split("/", 1)[1]: v
                                      for k, v in received["statuses"].items()}
    ok_bodies: dict[str, list[dict[str, Any]]] = {}
    sif_codes: Counter[str] = Counter()
    for req in received["requests"]:
        sif_codes[str(req.get("code") if req.get("answered") else f"{req.get('code')}/unanswered")] += 1
        body = req.get("body") or {}
        # Every OK we sent, taken or not: none may name another UUID or carry other bytes.
        if req.get("secret_ok") and body.get("status") == "OK" and body.get("reference"):
            ok_bodies.setdefault(body["reference"], []).append(body)

    for ref, inv in invoices.items():
        if inv.sat_uuid in double_uuids:
            findings.append(f"{ref}: its document was stamped more than once at Finkok")

    # unsettled: missing rows and rows not in a final state.
    unsettled = [ref for ref in expect if ref not in invoices or invoices[ref].state not in TERMINAL]
    for ref in unsettled[:10]:
        row = invoices.get(ref)
        findings.append(f"{ref}: not settled ({row.state if row else 'no row'})")

    # unexpected final states (e.g. failed after exhausting attempts).
    unexpected = [ref for ref, inv in invoices.items()
                  if inv.state in TERMINAL and inv.state != expect.get(ref)]
    for ref in unexpected[:10]:
        inv = invoices[ref]
        codes = [e.get("code") for e in inv.errors or []]
        findings.append(f"{ref}: ended {inv.state} ({inv.error_kind}, {codes}) after "
                        f"{inv.attempts} attempts, expected {expect.get(ref)}")

    # undelivered: the outcome the database holds is not what SIF accepted.
    undelivered = []
    for ref in expect:
        row = invoices.get(ref)
        wanted = _sif_status_for(row)
        delivered = wanted is not None and row is not None and any(
            n.status == wanted and n.state == "delivered" for n in notifications.get(row.id, []))
        if not (delivered and wanted in statuses.get(ref, [])):
            undelivered.append(ref)
    for ref in undelivered[:10]:
        row = invoices.get(ref)
        findings.append(f"{ref}: outcome not delivered (state {row.state if row else '-'}, "
                        f"SIF holds {statuses.get(ref, [])})")

    # conflicting: SIF accepted two different outcomes, or OKs with different folios, or
    # an OK whose folio is not the invoice's UUID.
    conflicting = []
    for ref in sorted(set(statuses) | set(ok_bodies)):
        held = statuses.get(ref, [])
        folios = {b["folio"] for b in ok_bodies.get(ref, [])}
        row = invoices.get(ref)
        if len(set(held)) > 1 or len(folios) > 1 or (
                folios and (row is None or folios != {row.sat_uuid})):
            conflicting.append(ref)
            findings.append(f"{ref}: SIF accepted {held} with folios {sorted(folios)}, "
                            f"the invoice holds {row.sat_uuid if row else None}")

    # xml_mismatch: every OK SIF took carries Finkok's XML for its UUID, byte for byte, and
    # the database holds the same bytes.
    mismatched = set()
    with httpx.Client(timeout=10) as client:
        cache: dict[str, str | None] = {}
        for ref, inv in invoices.items():
            if inv.sat_uuid is None:
                continue
            text = cache.setdefault(inv.sat_uuid, finkok_xml(
                stack.finkok_url, settings.finkok_username,
                settings.finkok_password.get_secret_value(), inv.sat_uuid, inv.emisor_rfc, client))
            finkok_bytes = text.encode("utf-8") if text is not None else None
            if finkok_bytes is None or inv.stamped_xml != finkok_bytes:
                mismatched.add(ref)
                findings.append(f"{ref}: the database's stamped XML differs from Finkok's")
            for body in ok_bodies.get(ref, []):
                if base64.b64decode(body["xml"]) != finkok_bytes:
                    mismatched.add(ref)
                    findings.append(f"{ref}: SIF got an XML that differs from Finkok's")

    # secrets: every captured log, and every text/bytes cell in the database.
    secrets_in_logs = secrets_in_db
    if secrets_in_db:
        findings.append(f"{secrets_in_db} database cells hold a configured secret")
    for path in sorted(p for p in (data_dir / "logs").rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits = sum(data.count(v.encode()) for v in secret_values)
        if hits:
            secrets_in_logs += hits
            findings.append(f"{path.name}: {hits} occurrences of a configured secret")

    figures: dict[str, float] = {
        "double_stamps": len(doubles), "unsettled": len(unsettled),
        "undelivered": len(undelivered), "conflicting": len(conflicting),
        "xml_mismatch": len(mismatched), "secrets_in_logs": secrets_in_logs,
        "settle_s": settle_s,
    }
    if not settled:
        notes.append("the run did not settle before --settle-timeout")
    states = Counter(inv.state for inv in invoices.values())
    results = Counter(n.result or n.state for ns in notifications.values() for n in ns)
    attempts = [inv.attempts for inv in invoices.values()]
    events = finkok.get("events", {})
    rejects = sum(1 for p in planned if p.expect == "rejected")
    rows = [
        ("backend", backend,
         f"{len(planned)} invoices, {stack.workers} workers x {stack.concurrency} processes"),
        ("intake", _fmt(dict(chaos.intake)), f"{chaos.enqueued} enqueued during the faults"),
        ("worker kills (SIGKILL)", str(len(chaos.kills)), " ".join(chaos.kills)),
        ("when the faults stopped", chaos.at_fault_stop, "the rest settled without faults"),
        *[("event", e, "") for e in chaos.events],
        ("Finkok calls", _fmt(finkok.get("calls", {})), ""),
        ("Finkok faults", _fmt(events), f"new stamps {finkok['totals']['new_stamps']}"),
        ("SIF answers", _fmt(dict(sif_codes)), f"{len(received['requests'])} PUTs"),
        ("invoices", _fmt(dict(states)),
         f"expected: {len(planned) - rejects} stamped, {rejects} rejected"),
        ("stamp attempts per invoice", f"max {max(attempts, default=0)}",
         f"mean {sum(attempts) / max(1, len(attempts)):.2f}"),
        ("notifications", _fmt(dict(results)), ""),
        ("unexpected final states", str(len(unexpected)), "must be 0"),
        *[(k, str(int(figures[k])), "must be 0") for k in MUST_BE_ZERO],
        ("settle_s", f"{settle_s:.1f}", "from the moment the faults stopped"),
    ]
    return ChaosReport(figures, backend, rows, findings, notes, data_dir, len(unexpected),
                       len(chaos.kills), list(chaos.events), dict(events), dict(states))


def _sif_status_for(inv: Any) -> str | None:
    """The status SIF must hold for an invoice's final state (None: none is owed yet)."""
    if inv is None:
        return None
    if inv.state == "stamped":
        return "OK"
    if inv.state == "rejected" or (inv.state == "failed" and inv.error_kind != "unknown"):
        return "NOK"
    return None


def _secrets_in_db(engine: Any, values: list[str]) -> int:
    """Cells (text, bytes, JSON) in any table that contain one of the secret values."""
    from sqlalchemy import select

    from worker.db.models import Base

    needles = [v.encode() for v in values]
    hits = 0
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)).yield_per(200):
                for value in row:
                    if value is None or isinstance(value, (int, float, bool)):
                        continue
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        blob = bytes(value)
                    elif isinstance(value, str):
                        blob = value.encode()
                    else:
                        blob = json.dumps(value, default=str).encode()
                    hits += sum(1 for n in needles if n in blob)
    return hits


# --- the command ----------------------------------------------------------------------------


def print_report(report: ChaosReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="chaos run", show_lines=False)
    for column in ("what", "value", "note"):
        table.add_column(column, overflow="fold")
    for what, value, note in report.rows:
        table.add_row(what, value, note)
    console = Console(width=max(120, shutil.get_terminal_size().columns))
    console.print(table)
    for note in report.notes:
        print(f"note: {note}")
    for finding in report.findings[:50]:
        print(f"finding: {finding}")
    if len(report.findings) > 50:
        print(f"... and {len(report.findings) - 50} more findings")
    print(f"logs: {report.data_dir / 'logs'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="invoices (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size per worker (default 2)")
    parser.add_argument("--seconds", type=float, default=60, help="fault phase length (default 60)")
    parser.add_argument("--kill-every", type=float, default=5, help="seconds between SIGKILLs")
    parser.add_argument("--embedded", action="store_true", help="force SQLite + filesystem broker")
    parser.add_argument("--settle-timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="the servers' broker (default redis; rabbitmq: BILLING_TEST_RABBITMQ_URL)")
    parser.add_argument("--set", action="append", default=[], metavar="BILLING_X=VALUE",
                        help="override a worker setting (repeatable)")
    parser.add_argument("--scenario", choices=("chaos", "outage"), default="chaos",
                        help="chaos: kills and random faults (default); outage: sustained "
                             "Finkok and SIF outages with default settings (bench/outage.py)")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set if "=" in item)
    if any(not k.startswith("BILLING_") for k in overrides) or len(overrides) != len(args.set):
        parser.error("--set takes BILLING_NAME=VALUE")
    if args.workers < 1 or args.count < 1:
        parser.error("--count and --workers must be at least 1")
    if args.broker == "rabbitmq" and args.embedded:
        parser.error("--broker rabbitmq runs on the servers: leave out --embedded")
    opts = ChaosOptions(
        count=args.count, workers=args.workers, concurrency=args.concurrency,
        seconds=args.seconds, kill_every_s=args.kill_every,
        backend="embedded" if args.embedded else "auto",
        settle_timeout_s=args.settle_timeout, seed=args.seed, data_dir=args.data_dir,
        settings_env=overrides, broker=args.broker,
    )
    if args.scenario == "outage":
        from bench.outage import run_outage

        report = run_outage(opts)
    else:
        report = run_chaos(opts)
    print_report(report)
    print(report.result_line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
