"""The floor: the essential CPU work of one invoice, measured piece by piece in isolation.

``bench.pipeline`` calls ``run_floor`` after its pipeline run (the stack stopped, so the
pieces do not compete with it) and compares the pipeline's CPU per invoice with the sum.
Each piece runs many times in a loop after a few untimed warm-up rounds; **client** is the
CPU time (``time.thread_time``: user + system, this thread only) spent in this process,
divided by the invoices the loop covered; **server** is the ``utime + stime`` (from /proc)
of the server process over the same loop, where one exists and can be read:

a. **stamp call**: the project's ``FinkokClient.stamp`` against a Finkok sandbox process
   answering at once (latency 0), one freshly sealed invoice per call. Counted: zeep
   building and serialising the SOAP envelope (the CFDI base64-encoded), requests/urllib3
   sending it and reading the answer (socket syscalls included), zeep parsing the answer
   and ``StampResult``. Server: the sandbox process (TFD, its RSA seal, its ledger).
b. **SQL**: the statements one invoice costs in the pipeline, copied from what the
   pipeline runs (checked with ``log_statement = 'all'`` on a run's database:
   ``--log-statements``), executed through raw psycopg 3 with server-side prepared
   statements (``prepare=True``) against a throwaway PostgreSQL database migrated to the
   real schema, or through raw sqlite3 (cached statements, WAL, ``BEGIN IMMEDIATE``, the
   engine's pragmas) with ``--embedded``. Per invoice, in five transactions:
   intake's INSERT .. ON CONFLICT DO NOTHING RETURNING (one multi-row statement per
   ``--batch``, as ``submit_many``); the stamp claim UPDATE .. RETURNING and the breaker
   SELECT; the settle: stamp attempt INSERT, two breaker UPDATEs (close, reset failures),
   the fenced UPDATE to ``stamped`` (NOT EXISTS another holder of the UUID), the outbox
   INSERT; the notification claim UPDATE, the SELECT of the claimed row with its invoice, the
   breaker SELECT; the delivery attempt INSERT, two breaker UPDATEs, the settle UPDATE.
   Left out: the pool's pre-ping (``;``) at each task's connection checkout, the
   producer's and beat's periodic queries. Server: the PostgreSQL backend (none on SQLite).
c. **SIF body**: what ``body_for`` does for an OK: ``extract`` of the stamped XML,
   ``render_cfdi`` (the PDF, its own row), ``build_ok`` (base64 of PDF and XML,
   datosFiscales) and ``validate_body`` (the JSON schema), on the sandbox's stamped XMLs.
d. **SIF PUT**: the project's ``SifClient.put_status`` (JSON encoding, one urllib3 request
   on a kept-alive connection, reading the answer) with that body against a SIF sandbox
   process. Server: the sandbox process (it parses and validates the body too).
e. **broker**: the two task messages of an invoice (stamp, notify), as the real producer
   publishes them (captured from the broker, ~1 KB each), each LPUSHed and BRPOPped with
   raw redis-py and its JSON decoded: the essential broker round trips without Celery
   (no unacked bookkeeping, no events, no acks). On the filesystem broker (``--embedded``)
   the same two messages go through its essential moves (write a temp file, rename it into
   the queue, list, rename it out, read, unlink). Server: redis-server (shared with
   whatever else uses it on this machine). Not measured with RabbitMQ.
f. **checks**: intake's per-invoice row (``check_ids``, ``check_cfdi`` strict: the seal's
   RSA verify and the cadena, SHA-256, SAT's deadline), and the parse of the stamped XML
   the stamp task does before it settles.

``floor_ms`` is the sum of the client column; the server column sums to
``server_floor_ms``. The beat, the sweeper and every retry or recovery path are not in
the floor: they are not per-invoice work on a healthy run.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cpu import cpu_seconds, find_pids
from worker.stack import LocalStack, wait_until

if TYPE_CHECKING:
    import psycopg

    from worker.finkok.results import StampResult
    from worker.settings import Settings

EMPRESA = "E-floor"
LIFECYCLE_TABLES = ("invoices", "stamp_attempts", "notifications", "delivery_attempts")


@dataclass
class Piece:
    key: str
    name: str
    counted: str
    invoices: int  # invoices the timed loop covered
    client_s: float  # CPU seconds of this thread over the loop
    server_s: float | None = None  # CPU seconds of the server process over the loop
    server: str = ""

    @property
    def client_ms(self) -> float:
        return self.client_s * 1000 / self.invoices

    @property
    def server_ms(self) -> float | None:
        return None if self.server_s is None else self.server_s * 1000 / self.invoices


@dataclass
class Floor:
    pieces: list[Piece]
    backend: str  # "PostgreSQL" / "SQLite"
    broker: str
    # per invoice, from pg_stat_user_tables: "<table> ins|upd" -> rows, "commits" -> xacts
    sql_rows: dict[str, float] = field(default_factory=dict)

    @property
    def floor_ms(self) -> float:
        return sum(p.client_ms for p in self.pieces)

    @property
    def server_ms(self) -> float:
        return sum(p.server_ms or 0.0 for p in self.pieces)


class _Cpu:
    """This thread's CPU and the server processes' CPU between ``start`` and ``stop``."""

    def __init__(self, servers: Sequence[int] = ()) -> None:
        self._servers = list(servers)
        self._t0 = 0.0
        self._s0: float | None = None

    def _server(self) -> float | None:
        if not self._servers:
            return None
        values = [cpu_seconds(pid) for pid in self._servers]
        return sum(v for v in values if v is not None)

    def start(self) -> _Cpu:
        self._s0 = self._server()
        self._t0 = time.thread_time()
        return self

    def stop(self) -> tuple[float, float | None]:
        client = time.thread_time() - self._t0
        s1 = self._server()
        return client, (s1 - self._s0 if s1 is not None and self._s0 is not None else None)


# --- a: the stamp call ---------------------------------------------------------------------


def stamp_piece(settings: Settings, docs: Sequence[bytes], finkok_pid: int,
                warmup: int) -> tuple[Piece, list[StampResult]]:
    from worker.finkok.client import FinkokClient

    results = []
    with FinkokClient.from_settings(settings) as client:
        client.zeep_client("stamp")  # built before timing, as a warm worker has it
        for xml in docs[:warmup]:
            client.stamp(xml)
        cpu = _Cpu([finkok_pid]).start()
        for xml in docs[warmup:]:
            results.append(client.stamp(xml))
        client_s, server_s = cpu.stop()
    if not all(r.has_stamp and r.xml and r.uuid for r in results):
        raise SystemExit("floor: the Finkok sandbox did not stamp every invoice")
    return Piece("a", "stamp call", "FinkokClient.stamp: envelope, HTTP, answer parse",
                 len(results), client_s, server_s, "Finkok sandbox process"), results


# --- f: the checks ---------------------------------------------------------------------------


def checks_piece(docs: Sequence[bytes], stamped: Sequence[bytes],
                 warmup: int) -> tuple[Piece, list[dict[str, Any]]]:
    from worker.cfdi.xml import parse
    from worker.invoices.intake import DEFAULT_MAX_XML_BYTES, Submission, _row

    subs = [Submission(xml, EMPRESA, f"F{i}") for i, xml in enumerate(docs)]
    for sub in subs[:warmup]:  # rows thrown away: every row below is inserted by the SQL piece
        _row(sub, DEFAULT_MAX_XML_BYTES, "strict")
        parse(stamped[0])
    rows = []
    cpu = _Cpu().start()
    for i, sub in enumerate(subs):  # every row is needed by the SQL piece: all timed
        rows.append(_row(sub, DEFAULT_MAX_XML_BYTES, "strict")[0])
        parse(stamped[i % len(stamped)])
    client_s, _ = cpu.stop()
    return Piece("f", "checks", "intake's row (check_cfdi strict), stamped XML parse",
                 len(rows), client_s), rows


# --- c: the SIF body -------------------------------------------------------------------------


def body_pieces(settings: Settings, results: Sequence[StampResult],
                reps: int, warmup: int) -> tuple[list[Piece], dict[str, Any]]:
    from worker.cfdi.extract import extract, fiscal_data_of
    from worker.cfdi.pdf import render_cfdi
    from worker.sif.payload import build_ok
    from worker.sif.schema import validate_body

    pdf_s = rest_s = 0.0
    body: dict[str, Any] = {}
    for i in range(warmup + reps):
        result = results[i % len(results)]
        stamped = (result.xml or "").encode("utf-8")
        t0 = time.thread_time()
        cfdi = extract(stamped)
        t1 = time.thread_time()
        pdf = render_cfdi(cfdi, settings.pdf_emisores)
        t2 = time.thread_time()
        body = build_ok(reference=f"F{i}", sat_uuid=(result.uuid or "").upper(), pedidoga=None,
                        stamped_xml=stamped, pdf=pdf, datos_fiscales=fiscal_data_of(cfdi.receptor),
                        type_=settings.sif_type)
        validate_body(body)
        t3 = time.thread_time()
        if i >= warmup:
            pdf_s += t2 - t1
            rest_s += (t1 - t0) + (t3 - t2)
    return [Piece("c1", "PDF render", "render_cfdi of one stamped invoice", reps, pdf_s),
            Piece("c2", "SIF body", "extract, build_ok (base64), validate_body", reps,
                  rest_s)], body


# --- d: the SIF PUT --------------------------------------------------------------------------


def put_piece(settings: Settings, body: dict[str, Any], sif_pid: int, reps: int,
              warmup: int) -> Piece:
    from worker.sif.client import SifClient

    bodies = [{**body, "reference": f"P{i}"} for i in range(warmup + reps)]
    with SifClient(settings) as client:
        for b in bodies[:warmup]:
            client.put_status(EMPRESA, b, validated=True)
        cpu = _Cpu([sif_pid]).start()
        codes = [client.put_status(EMPRESA, b, validated=True).status_code for b in bodies[warmup:]]
        client_s, server_s = cpu.stop()
    if set(codes) != {204}:
        raise SystemExit(f"floor: the SIF sandbox answered {sorted(set(codes))}, not 204")
    return Piece("d", "SIF PUT", "SifClient.put_status: JSON, urllib3", reps, client_s,
                 server_s, "SIF sandbox process")


# --- e: the broker ---------------------------------------------------------------------------


def captured_messages(settings: Settings) -> list[bytes]:
    """The stamp and notify messages exactly as the producer publishes them (a doorbell
    through the real Celery app), taken back from the broker."""
    from worker import doorbell
    from worker.celery_app import NOTIFY_QUEUE, STAMP_QUEUE, create_app
    from worker.db.models import new_id

    app = create_app(settings)
    found = []
    for bell, queue in ((doorbell.stamp(new_id(), reference="F0"), STAMP_QUEUE),
                        (doorbell.notify(new_id()), NOTIFY_QUEUE)):
        if not doorbell.ring(app, bell):
            raise SystemExit("floor: could not publish a message to capture")
        if settings.broker_url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(settings.broker_url)
            raw = client.lpop(settings.broker_key_prefix + queue)  # the newest: LPUSH puts it first
            client.close()
            if not isinstance(raw, bytes):
                raise SystemExit(f"floor: no message in the {queue} queue")
            found.append(raw)
        else:
            folder = settings.data_dir / "broker" / "queue"
            path = max(folder.glob(f"*.{queue}.msg"))
            found.append(path.read_bytes())
            path.unlink()
    return found


def redis_piece(redis_url: str, messages: Sequence[bytes], reps: int, warmup: int) -> Piece:
    import redis

    port = f":{redis_url.rsplit(':', 1)[1].split('/')[0]}"
    servers = find_pids(lambda c: c.startswith("redis-server") and port in c)
    client = redis.Redis.from_url(redis_url)
    keys = [f"billing_floor:{uuid.uuid4().hex[:8]}:{i}" for i in range(len(messages))]

    def invoice() -> None:
        for key, message in zip(keys, messages, strict=True):
            client.lpush(key, message)
            popped = client.brpop([key], timeout=5)
            if popped is None:
                raise SystemExit("floor: BRPOP found no message")
            json.loads(popped[1])

    for _ in range(warmup):
        invoice()
    cpu = _Cpu(servers).start()
    for _ in range(reps):
        invoice()
    client_s, server_s = cpu.stop()
    client.delete(*keys)
    client.close()
    size = "/".join(str(len(m)) for m in messages)
    return Piece("e", "broker", f"2 messages ({size} B): LPUSH, BRPOP, JSON", reps,
                 client_s, server_s if servers else None,
                 "redis-server (shared with its other users)" if servers else "")


def filesystem_piece(folder: Path, messages: Sequence[bytes], reps: int, warmup: int) -> Piece:
    queue = folder / "queue"
    taken = folder / "taken"
    queue.mkdir(parents=True, exist_ok=True)
    taken.mkdir(exist_ok=True)
    pid = os.getpid()

    def invoice() -> None:
        for n, message in enumerate(messages):
            suffix = f".q{n}.msg"
            name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}{suffix}"
            tmp = queue / f".{name}.tmp"
            with open(tmp, "wb") as f:
                f.write(message)
            os.replace(tmp, queue / name)
            first = sorted(x for x in os.listdir(queue) if x.endswith(suffix) and x[0] != ".")[0]
            mine = taken / f"{pid}-{first}"
            os.rename(queue / first, mine)
            payload = mine.read_bytes()
            mine.unlink()
            json.loads(payload)

    for _ in range(warmup):
        invoice()
    cpu = _Cpu().start()
    for _ in range(reps):
        invoice()
    client_s, _ = cpu.stop()
    size = "/".join(str(len(m)) for m in messages)
    return Piece("e", "broker", f"2 messages ({size} B) as files: write, rename, list, read",
                 reps, client_s)


# --- b: the SQL ------------------------------------------------------------------------------

_COLUMNS = ("id", "empresa_ref_id", "reference", "pedidoga", "xml", "xml_sha256", "xml_version",
            "emisor_rfc", "receptor_rfc", "total", "state", "state_changed_at",
            "next_attempt_at", "attempts", "must_check_stamped", "rung_at", "stamp_deadline_at",
            "created_at", "updated_at")


def _intake_sql(rows: int) -> str:
    values = ", ".join("(" + ", ".join(f":{c}_{r}" for c in _COLUMNS) + ")" for r in range(rows))
    return (f"INSERT INTO invoices ({', '.join(_COLUMNS)}) VALUES {values} "
            "ON CONFLICT (empresa_ref_id, reference) DO NOTHING RETURNING id")


CLAIM = (
    "UPDATE invoices SET state=:stamping, state_changed_at=:now, attempts=(invoices.attempts + "
    ":one), must_check_stamped=CASE WHEN (invoices.state IN (:stamping)) THEN true ELSE "
    "invoices.must_check_stamped END, lease_owner=:owner, lease_expires_at=:lease_until, "
    "updated_at=:now WHERE invoices.id = :row_id AND (invoices.state IN (:received, :retry_wait) "
    "AND (invoices.next_attempt_at IS NULL OR invoices.next_attempt_at <= :now) OR "
    "invoices.state IN (:stamping) AND invoices.lease_expires_at < :now) RETURNING xml, "
    "attempts, must_check_stamped, reference, empresa_ref_id, pedidoga, emisor_rfc, "
    "stamp_deadline_at, NOT (EXISTS (SELECT * FROM breakers WHERE breakers.state != :closed "
    "OR breakers.failures > :zero)) AS breakers_quiet")
STAMP_ATTEMPT = (
    "INSERT INTO stamp_attempts (invoice_id, operation, started_at, duration_ms, outcome, codes, "
    "message, worker) VALUES (:row_id, :operation, :started_at, :duration_ms, :outcome, :codes, "
    ":message, :owner) RETURNING id")
SETTLE = (
    "UPDATE invoices SET state=:stamped, state_changed_at=:now, next_attempt_at=:none, "
    "must_check_stamped=:false, lease_owner=:none, lease_expires_at=:none, sat_uuid=:uuid, "
    "stamped_xml=:stamped_xml, fecha_timbrado=:fecha, no_certificado_sat=:no_cert, "
    "sat_status=:none, stamped_at=:now, error_kind=:none, errors=:errors, updated_at=:now "
    "WHERE invoices.id = :row_id AND invoices.state IN (:stamping) AND invoices.lease_owner = "
    ":owner AND NOT (EXISTS (SELECT * FROM invoices AS other WHERE other.sat_uuid = :uuid AND "
    "other.id != :row_id))")
# The OK row born claimed by the stamping process's delivery thread (lifecycle.outbox).
OUTBOX = (
    "INSERT INTO notifications (id, invoice_id, status, state, state_changed_at, "
    "next_attempt_at, attempts, lease_owner, lease_expires_at, rung_at, created_at) VALUES "
    "(:nid, :row_id, :ok, :sending, :now, :now, :one, :owner, :lease_until, :now, :now)")
DELIVERY = (
    "INSERT INTO delivery_attempts (notification_id, started_at, duration_ms, status_code, "
    "error, response_body, worker) VALUES (:nid, :now, :duration_ms, :status, :none, :empty, "
    ":owner) RETURNING id")
DELIVERED = (
    "UPDATE notifications SET state=:delivered, state_changed_at=:now, next_attempt_at=:none, "
    "lease_owner=:none, lease_expires_at=:none, first_404_at=:none, last_status_code=:status, "
    "result=:delivered, delivered_at=:now WHERE notifications.id = :nid AND notifications.state "
    "IN (:sending) AND notifications.lease_owner = :owner")

# per invoice: 1 intake INSERT (batched), claim; attempt, settle, outbox; attempt, delivered
_STATEMENTS = 7
_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")
_NULLS = 8


def _nulls(sql: str) -> str:
    """Each NULL its own parameter (PostgreSQL deduces one type per parameter)."""
    parts = sql.split(":none")
    assert len(parts) <= _NULLS + 1
    return "".join(f":none{i - 1}{part}" if i else part for i, part in enumerate(parts))


class _Json:
    """A JSON column's value (psycopg's Json on PostgreSQL, text on SQLite)."""

    def __init__(self, value: object) -> None:
        self.value = value


class _Raw:
    """One connection, raw: prepared statements, explicit transactions."""

    def __init__(self, url: str) -> None:
        self.postgres = not url.startswith("sqlite")
        self.backend_pid: int | None = None
        self._pg: psycopg.Connection[Any] | None = None
        self._lite: sqlite3.Connection | None = None
        self._texts: dict[str, str] = {}
        if self.postgres:
            import psycopg
            from psycopg.types.json import Json

            self._json = Json
            self._pg = psycopg.connect(_plain(url), autocommit=True)
            self.backend_pid = self._pg.info.backend_pid
        else:  # as worker.db.session configures SQLite
            self._lite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None,
                                         timeout=30, check_same_thread=False)
            for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON",
                           "synchronous=NORMAL"):
                self._lite.execute(f"PRAGMA {pragma}")

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._lite is not None:
            self._lite.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._pg is not None:
            with self._pg.transaction():
                yield
            return
        assert self._lite is not None
        self._lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._lite.execute("ROLLBACK")
            raise
        self._lite.execute("COMMIT")

    def rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        if self._pg is not None:
            text = self._texts.get(sql)
            if text is None:
                text = self._texts[sql] = _NAMED.sub(r"%(\1)s", _nulls(sql))
            pg = {k: self._json(v.value) if isinstance(v, _Json) else v for k, v in params.items()}
            cur = self._pg.execute(text, pg, prepare=True)
            return cur.fetchall() if cur.description else []
        assert self._lite is not None
        lite = {k: _lite_value(v) for k, v in params.items()}
        return self._lite.execute(sql, lite).fetchall()


def _lite_value(value: object) -> object:
    """As SQLAlchemy binds it on SQLite: naive UTC text for a datetime, JSON as text."""
    if isinstance(value, datetime):
        return str(value.astimezone(UTC).replace(tzinfo=None))
    if isinstance(value, _Json):
        return json.dumps(value.value)
    return value


def _plain(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(False)


def sql_piece(url: str, rows: Sequence[dict[str, Any]], results: Sequence[StampResult],
              settings: Settings, batch: int, warmup: int) -> tuple[Piece, int | None]:
    """Every statement of ``rows``' lives; the first ``warmup`` untimed. Returns the piece
    and the backend's pid (for its table statistics), None on SQLite."""
    raw = _Raw(url)
    fixed = {"stamping": "stamping", "received": "received", "retry_wait": "retry_wait",
             "one": 1, "zero": 0, "zero_f": 0.0, "false": False, "closed": "closed",
             **{f"none{i}": None for i in range(_NULLS)}, "none": None,
             "stamped": "stamped", "ok": "OK", "queued": "queued", "sending": "sending",
             "delivered": "delivered", "empty": "", "status": 204}

    def lives(group: Sequence[dict[str, Any]], offset: int) -> None:
        with raw.transaction():  # intake: one multi-row INSERT per batch
            params = {f"{c}_{r}": v for r, row in enumerate(group) for c, v in row.items()
                      if c in _COLUMNS}
            inserted = raw.rows(_intake_sql(len(group)), params)
        if len(inserted) != len(group):
            raise SystemExit("floor: the intake INSERT did not insert every row")
        for n, row in enumerate(group):
            result = results[(offset + n) % len(results)]
            owner = f"floor:{os.getpid()}:{n}"
            now = datetime.now(UTC)
            p = {**fixed, "row_id": row["id"], "now": now, "owner": owner,
                 "lease_until": now + timedelta(seconds=settings.claim_lease_s)}
            with raw.transaction():  # the stamp claim (the breakers quiet: no more)
                claimed = raw.rows(CLAIM, p)
                if not claimed or not claimed[0][-1]:
                    raise SystemExit("floor: the claim took no row, or a breaker is not quiet")
            now = datetime.now(UTC)
            nid = str(uuid.uuid4())
            p.update(now=now, nid=nid, uuid=str(uuid.uuid4()).upper(),
                     stamped_xml=(result.xml or "").encode("utf-8"), fecha=result.fecha,
                     no_cert=result.no_certificado_sat, errors=_Json(None))
            with raw.transaction():  # the settle, with its outbox row
                raw.rows(STAMP_ATTEMPT, {**p, "operation": "stamp", "started_at": now,
                                         "duration_ms": 300, "outcome": "success",
                                         "codes": _Json(None),
                                         "message": "Comprobante timbrado satisfactoriamente"})
                raw.rows(SETTLE, p)
                raw.rows(OUTBOX, {**p, "lease_until": now + timedelta(
                    seconds=settings.claim_lease_s)})
            p.update(now=datetime.now(UTC), duration_ms=5)
            with raw.transaction():  # the delivery attempt and the settle
                raw.rows(DELIVERY, p)
                raw.rows(DELIVERED, p)

    def run(subset: Sequence[dict[str, Any]], size: int) -> None:
        for lo in range(0, len(subset), size):
            lives(subset[lo:lo + size], lo)

    run(rows[:warmup], min(batch, max(1, warmup)))
    cpu = _Cpu([raw.backend_pid] if raw.backend_pid else []).start()
    run(rows[warmup:], batch)
    client_s, server_s = cpu.stop()
    raw.close()
    driver = "psycopg" if raw.postgres else "sqlite3"
    return Piece("b", "SQL", f"{_STATEMENTS} statements, 4 transactions, {driver} prepared",
                 len(rows) - warmup, client_s, server_s,
                 "PostgreSQL backend" if raw.postgres else ""), raw.backend_pid


def pg_table_rows(url: str, invoices: int, timeout_s: float = 15.0) -> dict[str, float]:
    """Rows inserted and updated per invoice in the lifecycle tables, and commits per
    invoice, from PostgreSQL's statistics (``url``'s database; its backends have gone, so
    their counts are flushed: waited for until the invoices' inserts show)."""
    import psycopg

    found: dict[str, float] = {}

    def read() -> bool:
        with psycopg.connect(_plain(url), autocommit=True) as conn:
            stats = {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables")}
            commits = conn.execute("SELECT xact_commit FROM pg_stat_database "
                                   "WHERE datname = current_database()").fetchone()
        for table in LIFECYCLE_TABLES:
            ins, upd = stats.get(table, (0, 0))
            found[f"{table} ins"] = ins / invoices
            found[f"{table} upd"] = upd / invoices
        found["commits"] = (commits[0] if commits else 0) / invoices
        return found["invoices ins"] >= 1.0

    wait_until(read, timeout_s, interval_s=0.5)
    return found


# --- the whole floor ---------------------------------------------------------------------------


@contextmanager
def throwaway_database(postgres_url: str, log_statements: bool) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = psycopg.connect(_plain(postgres_url), autocommit=True, connect_timeout=3)
    name = f"billing_floor_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    if log_statements:
        admin.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(False)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run_floor(xmls: Sequence[bytes], *, data_dir: Path, postgres_url: str | None,
              broker_url: str, batch: int, log_statements: bool = False,
              reps: int = 200, say: Callable[[str], None] = print) -> Floor:
    """Measure every piece, on the pipeline's kind of servers: ``postgres_url`` None is
    SQLite; ``broker_url`` empty is the filesystem broker, ``redis://`` Redis, anything
    else (RabbitMQ) leaves the broker piece out."""
    from worker.cfdi.factory import build_invoice

    warmup = 5
    n = warmup + reps
    docs = list(xmls[:n]) + [build_invoice(folio=f"floor{i}") for i in range(n - len(xmls[:n]))]
    sql_warmup = min(batch, 50)
    sql_docs = [*docs, *docs, *docs][:sql_warmup + reps]  # SQL rows need no distinct bytes
    t0 = time.perf_counter()
    with _database(postgres_url, log_statements, data_dir) as database_url:
        redis_url = broker_url if broker_url.startswith(("redis://", "rediss://")) else ""
        stack = LocalStack(data_dir, database_url=database_url, broker_url=redis_url,
                           finkok_config={"latency_ms": 0})
        try:
            stack.migrate()
            stack.start_sandboxes()
            settings = stack.settings()
            stamp, results = stamp_piece(settings, docs, stack.processes["finkok"].pid, warmup)
            stamped = [(r.xml or "").encode("utf-8") for r in results]
            checks, rows = checks_piece(sql_docs, stamped, warmup)
            bodies, body = body_pieces(settings, results, reps=min(reps, 60), warmup=3)
            put = put_piece(settings, body, stack.processes["sif"].pid, reps, warmup)
            messages = captured_messages(settings)  # the filesystem broker's, for RabbitMQ
            broker = (redis_piece(redis_url, messages, reps * 5, warmup * 10) if redis_url
                      else None if broker_url
                      else filesystem_piece(data_dir / "floor-broker", messages, reps * 5,
                                            warmup * 10))
            sql, backend_pid = sql_piece(stack.database_url, rows, results, settings, batch,
                                         sql_warmup)
        finally:
            stack.stop()
        sql_rows = (pg_table_rows(database_url, len(rows))
                    if postgres_url and backend_pid else {})
    say(f"floor measured in {time.perf_counter() - t0:.1f} s")
    pieces = [stamp, sql, *bodies, put, *([broker] if broker else []), checks]
    return Floor(pieces, "PostgreSQL" if postgres_url else "SQLite",
                 "Redis" if redis_url else "filesystem" if not broker_url else "not measured",
                 sql_rows)


@contextmanager
def _database(postgres_url: str | None, log_statements: bool, data_dir: Path) -> Iterator[str]:
    if postgres_url:
        with throwaway_database(postgres_url, log_statements) as url:
            yield url
    else:
        yield f"sqlite:///{data_dir / 'floor.db'}"
