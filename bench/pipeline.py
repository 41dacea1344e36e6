"""Pipeline throughput: N invoices through enqueue -> stamp -> stamped, against a serial loop.

    python -m bench.pipeline [--count 2000] [--latency-ms 300] [--workers 2] [--concurrency 12]
                             [--broker redis|rabbitmq] [--rss-warmup 200] [--floor-reps 200]
                             [--log-statements]

The pipeline run starts a LocalStack (the Finkok and SIF sandboxes, Celery workers and the
beat as processes), on PostgreSQL + Redis when they answer (else the embedded SQLite +
filesystem broker; ``--broker rabbitmq``: PostgreSQL + RabbitMQ, in a vhost of the run's
own at BILLING_TEST_RABBITMQ_URL, quorum queues and publisher confirms), with
the Finkok sandbox answering after --latency-ms. The clock starts
when every worker is ready; it enqueues the invoices through intake (``submit_many`` in
chunks of --batch, as ``billing enqueue`` does; every invoice is validated, stored and
published on its own) and times until every one is `stamped` (SIF delivery runs too).
The producer shares the two cores with the workers: with --batch 1 its per-invoice
transactions cost the pipeline a few invoices/s here.

The baseline is what a cron job would do: one stamp call after another through the same
Finkok client, against a fresh sandbox with the same latency, on the first --serial-count
of the same invoices (the serial rate is per call, so a sample measures it; running 2,000
calls at 300 ms one by one would take ten minutes).

The CPU table is read from /proc per process group, from `ready` until every OK is
delivered (``bench.cpu``). Against it, the same run measures the **floor**
(``bench.floor``, after the stack has stopped): the essential work of one invoice, each
piece alone in this process (the stamp call's client side, the pipeline's own SQL through
raw psycopg or sqlite3 with prepared statements, the PDF and the SIF body, the SIF PUT,
the two broker hops with raw redis-py, intake's checks), with the server processes' share
beside it. ``floor_ms`` is the client side's sum; ``cpu_over_floor`` divides every
process's CPU by it, ``own_over_floor`` only our own processes' (workers, producer, beat:
like with like); ``server_floor_ms`` is the servers' share of the floor. On PostgreSQL the
rows each lifecycle table gained per invoice are compared with the floor's
(pg_stat_user_tables); ``--log-statements`` logs every statement of both databases in the
server log, to compare the lists themselves.

**Memory**: the Celery workers' main processes and their pool children, sampled at
`ready`, once the first --rss-warmup invoices are delivered (imports and caches warm: the
start), at each quarter of the run (growth that levels off and growth that goes on look
different) and at the end; ``rss_start_mb``/``rss_end_mb`` are sums of Pss
(/proc/<pid>/smaps_rollup: a page shared by a parent and its forked children is counted
once, split among them), the table also shows the VmRSS sum and the largest process;
``vmrss_growth_pct`` is the VmRSS sum's growth (a child copying an inherited page on
write moves Pss, not VmRSS; memory never freed moves both).
A child replaced under ``worker_max_tasks_per_child`` takes its growth with it: the run
says how many were replaced. The invoices are sealed up front (about 2 ms and 3 KB each:
10,000 take ~20 s and ~32 MB in this process, none in the workers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench.cpu import CpuMeter, Key, memory_kb, process_group, process_key
from bench.floor import Floor, pg_table_rows, run_floor
from worker.stack import LocalStack, wait_until

if TYPE_CHECKING:
    import psycopg

console = Console()


def make_invoices(count: int) -> list[bytes]:
    from worker.cfdi.factory import build_invoice

    return [build_invoice(folio=str(i)) for i in range(count)]


def servers(
    postgres_url: str, redis_url: str
) -> tuple[str, str, tuple[psycopg.Connection[Any], str]] | None:
    """A throwaway PostgreSQL database and a flushed Redis db, when both answer."""
    import psycopg
    import redis
    from sqlalchemy.engine import make_url

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).flushdb()
        base = make_url(postgres_url)
        admin = psycopg.connect(base.set(drivername="postgresql").render_as_string(False),
                                autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "use the embedded default"
        console.print(f"[yellow]servers not reachable ({type(exc).__name__}); embedded default[/]")
        return None
    name = f"billing_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return base.set(database=name).render_as_string(False), redis_url, (admin, name)


GROUP_ORDER = ("stamp children", "stamp main", "notify children", "notify main", "PostgreSQL",
               "sandboxes", "producer", "Redis", "beat")
SERVER_GROUPS = ("PostgreSQL", "sandboxes", "Redis")  # the rest is our own code's CPU
WORKER_GROUPS = ("stamp main", "stamp children", "notify main", "notify children")


@dataclass
class MemorySample:
    """VmRSS and Pss (kB) of every Celery worker process: each worker's main process and
    its prefork pool children (its process group)."""

    label: str
    processes: dict[Key, tuple[str, int, int]]  # (pid, start) -> (group, VmRSS, Pss)

    def pss_mb(self, group: str | None = None) -> float:
        return sum(p for g, _, p in self.processes.values() if group in (None, g)) / 1024

    def rss_mb(self) -> float:
        return sum(r for _, r, _ in self.processes.values()) / 1024

    def max_rss_mb(self) -> float:
        return max((r for _, r, _ in self.processes.values()), default=0) / 1024

    def children(self) -> set[Key]:
        return {k for k, p in self.processes.items() if p[0].endswith("children")}


def sample_memory(stack: LocalStack, label: str) -> MemorySample:
    found: dict[Key, tuple[str, int, int]] = {}
    for name, proc in stack.processes.items():
        if name in ("finkok", "sif", "beat"):
            continue
        kind = "notify" if name == "notifier" else "stamp"
        for pid in process_group(proc.pid):
            key, memory = process_key(pid), memory_kb(pid)
            if key is not None and memory is not None:
                found[key] = (f"{kind} {'main' if pid == proc.pid else 'children'}", *memory)
    return MemorySample(label, found)


@dataclass
class PipelineRun:
    rate: float
    delivered_rate: float
    label: str
    cpu: dict[str, float]
    memory: list[MemorySample]  # at ready, after the warm-up, at each quarter, at the end
    max_tasks_per_child: int | None
    postgres: bool  # PostgreSQL (else SQLite)
    broker_url: str  # "": the filesystem broker
    sql_rows: dict[str, float] = field(default_factory=dict)  # pg_stat_user_tables per invoice
    uncounted_s: float = 0.0  # this process's own sampling and watching (not the producer's)


def cpu_meter(stack: LocalStack, database: str | None, redis_url: str | None) -> CpuMeter:
    """CPU per group: each worker's main process and its pool children, the sandboxes, the
    beat, this process (the producer), the PostgreSQL backends of the bench's database and
    the Redis server (shared with whatever else uses it on this machine)."""
    names = {proc.pid: name for name, proc in stack.processes.items()}  # each its own session
    me = os.getpid()
    redis_port = f":{redis_url.rsplit(':', 1)[1].split('/')[0]}" if redis_url else None

    def classify(pid: int, pgid: int, cmdline: str) -> str | None:
        if pid == me:
            return "producer"
        name = names.get(pgid)
        if name is not None:
            if name in ("finkok", "sif"):
                return "sandboxes"
            if name == "beat":
                return "beat"
            kind = "notify" if name == "notifier" else "stamp"
            return f"{kind} {'main' if pid == pgid else 'children'}"
        if database and cmdline.startswith("postgres:") and f" {database} " in cmdline:
            return "PostgreSQL"
        if redis_port and cmdline.startswith("redis-server") and redis_port in cmdline:
            return "Redis"
        return None

    return CpuMeter(classify)


def run_pipeline(xmls: list[bytes], args: argparse.Namespace, data_dir: Path) -> PipelineRun:
    """invoices/s until all are stamped, and until SIF has all their OKs; CPU seconds per
    process group from `ready` until every OK is delivered; the workers' memory at ready,
    once the first --rss-warmup invoices are delivered, and at the end."""
    from worker.celery_app import STAMP_TASK, create_app
    from worker.db.models import Invoice, Notification
    from worker.db.session import create_db_engine, session_factory
    from worker.doorbell import bell_for
    from worker.invoices.intake import Submission, submit_many

    vhost = None
    if args.broker == "rabbitmq":  # the same throwaway database, a vhost of the run's own
        from bench.rabbitmq import RabbitVhost

        vhost = RabbitVhost(args.rabbitmq_url, prefix="billing_bench").create()
    backend = servers(args.postgres_url, args.redis_url) if not args.embedded else None
    if backend and args.log_statements:  # before any worker connects
        backend[2][0].execute(f"ALTER DATABASE \"{backend[2][1]}\" SET log_statement = 'all'")
    if backend and vhost:
        backend = (backend[0], vhost.url, backend[2])
    elif vhost:
        vhost.delete()
        raise SystemExit("--broker rabbitmq needs PostgreSQL (BILLING_TEST_POSTGRES_URL)")
    stack = LocalStack(
        data_dir,
        database_url=backend[0] if backend else "",
        broker_url=backend[1] if backend else "",
        workers=args.workers,
        concurrency=args.concurrency,
        notify_concurrency=args.notify_concurrency,
        finkok_config={"latency_ms": args.latency_ms},
        settings_env={"BILLING_DATABASE_POOL_SIZE": "2", "BILLING_SWEEP_INTERVAL_S": "5",
                      "BILLING_SIF_FIRST_DELIVERY": "false" if args.no_first_delivery else "true"},
    )
    label = ("PostgreSQL + RabbitMQ" if vhost else "PostgreSQL + Redis") if backend \
        else "SQLite + filesystem broker"
    try:
        stack.start()
        settings = stack.settings()
        app = create_app(settings)
        engine = create_db_engine(settings.database_url)
        sessions = session_factory(engine)

        def stamped() -> int:
            with sessions() as s:
                return s.scalar(select(func.count()).select_from(Invoice)
                                .where(Invoice.state == "stamped")) or 0

        if not stack.wait_ready():  # the clock starts when every worker consumes
            raise SystemExit(f"the workers did not start; logs in {stack.logs}")
        memory = [sample_memory(stack, "ready")]
        warm = min(args.rss_warmup, max(1, len(xmls) // 3))

        def delivered() -> int:
            with sessions() as s:
                return s.scalar(select(func.count()).select_from(Notification)
                                .where(Notification.state == "delivered")) or 0

        # After the warm-up (the start), then at each quarter: growth that levels off (caches,
        # allocator arenas filling) and growth that goes on (a leak) look different.
        marks = [warm, *(m for m in (len(xmls) // 4 * k for k in (1, 2, 3)) if m > warm)]

        def warmed(count: int | None = None) -> None:
            """The start sample once the first `warm` invoices are delivered, then one at
            each quarter of the run."""
            if len(memory) - 1 < len(marks):
                mark = marks[len(memory) - 1]
                if (count if count is not None else delivered()) >= mark:
                    memory.append(sample_memory(stack, f"after {mark} delivered"))

        meter = cpu_meter(stack, backend[2][1] if backend else None,
                          backend[1] if backend else None)
        meter.start()
        start = time.perf_counter()
        publish = bell_for(app, STAMP_TASK)
        for lo in range(0, len(xmls), args.batch):
            chunk = [Submission(xml, "E-bench", f"B{lo + i}")
                     for i, xml in enumerate(xmls[lo:lo + args.batch])]
            refused = [r for r in submit_many(sessions, chunk, publish=publish)
                       if isinstance(r, Exception)]
            if refused:
                raise SystemExit(f"intake refused a bench invoice: {refused[0]}")
        console.print(f"enqueued {len(xmls)} in {time.perf_counter() - start:.1f} s")
        def all_stamped() -> bool:
            with meter.watching():  # the bench's own polls and samples: not the producer's
                warmed()
                return stamped() == len(xmls)

        def all_delivered() -> bool:
            with meter.watching():
                count = delivered()
                warmed(count)
                return count == len(xmls)

        if not wait_until(all_stamped, args.timeout, interval_s=0.25):
            raise SystemExit(f"only {stamped()} of {len(xmls)} stamped in {args.timeout} s; "
                             f"logs in {stack.logs}")
        rate = len(xmls) / (time.perf_counter() - start)
        wait_until(all_delivered, args.timeout, interval_s=0.25)
        delivered_rate = delivered() / (time.perf_counter() - start)
        cpu = meter.stop()
        if len(memory) == 1:  # (a run shorter than the warm-up)
            memory.append(sample_memory(stack, f"after {delivered()} delivered"))
        memory.append(sample_memory(stack, "end"))
        double = stack.finkok_stats()["totals"].get("double_stamped_documents", 0)
        engine.dispose()
        if double:
            raise SystemExit(f"{double} documents stamped twice")
        stack.stop()  # the backends exit and flush their table statistics
        rows = pg_table_rows(backend[0], len(xmls)) if backend else {}
        return PipelineRun(rate, delivered_rate, label, cpu, memory,
                           app.conf.worker_max_tasks_per_child, backend is not None,
                           backend[1] if backend else "", rows, meter.uncounted_s)
    finally:
        stack.stop()
        if backend:
            admin, name = backend[2]
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        if vhost:
            vhost.delete()


def run_serial(xmls: list[bytes], latency_ms: float) -> float:
    from worker.finkok.client import FinkokClient
    from worker.sandbox.finkok import FinkokSandbox

    with FinkokSandbox(latency_ms=latency_ms) as sandbox, FinkokClient(
        sandbox.url, "sandbox@example.com", "sandbox"
    ) as client:
        start = time.perf_counter()
        for xml in xmls:
            assert client.stamp(xml).has_stamp
        return len(xmls) / (time.perf_counter() - start)


def measure(xmls: list[bytes], args: argparse.Namespace, data_dir: Path) -> tuple[PipelineRun, Floor]:
    """The pipeline run, then the floor on the same kind of servers (the stack stopped)."""
    run = run_pipeline(xmls, args, data_dir)
    floor = run_floor(xmls, data_dir=data_dir / "floor",
                      postgres_url=args.postgres_url if run.postgres else None,
                      broker_url=run.broker_url, batch=args.batch,
                      log_statements=args.log_statements, reps=args.floor_reps,
                      say=console.print)
    return run, floor


def print_floor(floor: Floor, run: PipelineRun, n: int) -> None:
    table = Table("piece", "what is counted", "invoices", "client ms", "server ms",
                  title=f"Floor: each piece alone, CPU ms per invoice ({floor.backend}, "
                  f"{floor.broker} broker; bench/floor.py)")
    for p in floor.pieces:
        table.add_row(f"{p.key}. {p.name}", p.counted, str(p.invoices), f"{p.client_ms:.2f}",
                      "-" if p.server_ms is None else f"{p.server_ms:.2f}")
    table.add_row("floor", "sum", "", f"{floor.floor_ms:.2f}", f"{floor.server_ms:.2f}")
    console.print(table)
    console.print("client: this process's thread (time.thread_time); server: "
                  + ", ".join(f"{p.key} {p.server}" for p in floor.pieces if p.server_ms is not None)
                  + " (/proc utime+stime)")
    own = sum(v for g, v in run.cpu.items() if g not in SERVER_GROUPS) * 1000 / n
    servers = sum(v for g, v in run.cpu.items() if g in SERVER_GROUPS) * 1000 / n
    console.print(f"pipeline, our processes (workers, producer, beat): {own:.1f} ms per invoice, "
                  f"{own / floor.floor_ms:.1f} × the floor's client side; servers "
                  f"({', '.join(g for g in SERVER_GROUPS if g in run.cpu)}): {servers:.1f} ms, "
                  f"the floor's server side {floor.server_ms:.1f}")
    if run.sql_rows and floor.sql_rows:
        cells = [f"{k} {run.sql_rows[k]:.2f}/{floor.sql_rows.get(k, 0.0):.2f}"
                 for k in run.sql_rows if run.sql_rows[k] or floor.sql_rows.get(k)]
        console.print("SQL check, rows per invoice pipeline/floor (pg_stat_user_tables; "
                      "commits: pg_stat_database, where each pool pre-ping counts one): "
                      f"{', '.join(cells)}")


def print_memory(run: PipelineRun) -> None:
    table = Table("Celery workers", *(m.label for m in run.memory),
                  title="Worker memory, MB (Pss: shared pages split among their sharers; "
                  "RSS: VmRSS)")
    for group in WORKER_GROUPS:
        table.add_row(f"{group} (Pss)", *(f"{m.pss_mb(group):.0f}" for m in run.memory))
    table.add_row("all (Pss sum)", *(f"{m.pss_mb():.0f}" for m in run.memory))
    table.add_row("all (RSS sum)", *(f"{m.rss_mb():.0f}" for m in run.memory))
    table.add_row("largest process (RSS)", *(f"{m.max_rss_mb():.0f}" for m in run.memory))
    table.add_row("processes", *(str(len(m.processes)) for m in run.memory))
    console.print(table)
    start, end = run.memory[1], run.memory[-1]
    gone = start.children() - end.children()
    per_group = ", ".join(
        f"{sum(start.processes[k][0] == g for k in gone)} of {group_size} {g}"
        for g in ("stamp children", "notify children")
        if (group_size := sum(start.processes[k][0] == g for k in start.children())))
    console.print(f"pool children are recycled after {run.max_tasks_per_child} tasks "
                  "(worker_max_tasks_per_child, worker/celery_app.py; LocalStack passes no "
                  f"--max-tasks-per-child): {len(gone)} of the {len(start.children())} children "
                  f"present {start.label} were replaced by the end ({per_group}; a replaced "
                  "child's growth is not in the end sample)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=12, help="processes per worker")
    parser.add_argument("--notify-concurrency", type=int, default=2,
                        help="processes of a dedicated SIF-notification worker (0: shared)")
    parser.add_argument("--batch", type=int, default=100,
                        help="invoices per intake transaction, as `billing enqueue` sends a "
                        "manifest (1: one submit per invoice, as API clients send them)")
    parser.add_argument("--serial-count", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--embedded", action="store_true", help="force SQLite + filesystem broker")
    parser.add_argument("--data-dir", default="", help="keep the stack's data and logs here")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "BILLING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis",
                        help="the servers' broker (default redis)")
    parser.add_argument("--rabbitmq-url", default=os.environ.get(
        "BILLING_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--no-first-delivery", action="store_true",
                        help="every SIF delivery through the notify task (the baseline for "
                        "worker/invoices/first_delivery.py)")
    parser.add_argument("--rss-warmup", type=int, default=200,
                        help="the workers' start memory is sampled once this many invoices "
                        "are delivered (at most a third of --count)")
    parser.add_argument("--floor-reps", type=int, default=200,
                        help="invoices per floor piece (bench.floor)")
    parser.add_argument("--log-statements", action="store_true",
                        help="log_statement=all on the run's and the floor's PostgreSQL "
                        "databases (the server log then holds every statement, by database)")
    args = parser.parse_args()
    if args.broker == "rabbitmq" and args.embedded:
        parser.error("--broker rabbitmq runs on the servers: leave out --embedded")

    t0 = time.perf_counter()
    xmls = make_invoices(args.count)
    console.print(f"sealed {len(xmls)} invoices in {time.perf_counter() - t0:.1f} s "
                  f"({sum(map(len, xmls)) / 1e6:.0f} MB)")
    serial = run_serial(xmls[: args.serial_count], args.latency_ms)
    console.print(f"serial loop: {serial:.2f} invoices/s over {min(args.serial_count, len(xmls))} calls")
    if args.data_dir:
        run, floor = measure(xmls, args, Path(args.data_dir))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run, floor = measure(xmls, args, Path(tmp))
    rate, delivered, label, cpu = run.rate, run.delivered_rate, run.label, run.cpu

    table = Table("run", "invoices", "invoices/s", title=f"Finkok latency {args.latency_ms:g} ms")
    table.add_row(f"pipeline to stamped ({label}, {args.workers}×{args.concurrency} processes)",
                  str(len(xmls)), f"{rate:.1f}")
    table.add_row(f"pipeline to SIF delivered (+ notifier ×{args.notify_concurrency})",
                  str(len(xmls)), f"{delivered:.1f}")
    table.add_row("serial loop (one call after another)", str(min(args.serial_count, len(xmls))),
                  f"{serial:.2f}")
    console.print(table)
    n = len(xmls)
    cpu_table = Table("process group", "CPU ms per invoice", "share",
                      title="CPU from ready to every OK delivered (/proc utime+stime)")
    total = sum(cpu.values())
    for group in sorted(cpu, key=lambda g: GROUP_ORDER.index(g) if g in GROUP_ORDER else 99):
        cpu_table.add_row(group, f"{cpu[group] * 1000 / n:.1f}",
                          f"{cpu[group] / total:.0%}" if total else "-")
    cpu_table.add_row("all", f"{total * 1000 / n:.1f}", "100%")
    console.print(cpu_table)
    console.print(f"not counted: this process's own CPU meter, database polls and memory "
                  f"samples, {run.uncounted_s * 1000 / n:.2f} ms per invoice")
    print_floor(floor, run, n)
    print_memory(run)
    own = sum(v for g, v in cpu.items() if g not in SERVER_GROUPS) * 1000 / n
    rss_start, rss_end = run.memory[1].pss_mb(), run.memory[-1].pss_mb()
    # VmRSS beside Pss: a page a child copies on write (it touched an object it inherited)
    # moves Pss, not RSS; an allocation that is never freed moves both.
    vm_start, vm_end = run.memory[1].rss_mb(), run.memory[-1].rss_mb()
    print(f"RESULT invoices_per_s={rate:.1f} serial_per_s={serial:.2f} ratio={rate / serial:.1f} "
          f"delivered_per_s={delivered:.1f} cpu_ms_per_invoice={total * 1000 / n:.1f} "
          f"floor_ms={floor.floor_ms:.1f} cpu_over_floor={total * 1000 / n / floor.floor_ms:.1f} "
          f"own_cpu_ms_per_invoice={own:.1f} own_over_floor={own / floor.floor_ms:.1f} "
          f"server_floor_ms={floor.server_ms:.1f} rss_start_mb={rss_start:.0f} "
          f"rss_end_mb={rss_end:.0f} rss_growth_pct={(rss_end / rss_start - 1) * 100:.1f} "
          f"vmrss_growth_pct={(vm_end / vm_start - 1) * 100:.1f}")


if __name__ == "__main__":
    main()
