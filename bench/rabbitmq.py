"""A RabbitMQ virtual host of one's own, for a test run, a benchmark or a chaos run.

A vhost is RabbitMQ's namespace: its queues, exchanges, bindings and connections are apart
from every other vhost's, so a run in a fresh vhost cannot take (or leave behind) anyone
else's messages, and deleting it afterwards removes everything it declared. The vhost is
administered with ``rabbitmqctl`` (root, or the rabbitmq user, on the broker's machine)
or, where that is not at hand, the management plugin's HTTP API on port 15672 with the
URL's credentials; ``VhostAdminError`` says why neither worked.

``close_connections()`` is the broker fault of ``bench.chaos --broker rabbitmq``: every
client connection of this vhost is closed by the server (what clients see when a broker
node restarts or a load balancer drops them), leaving other vhosts alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
MANAGEMENT_PORT = 15672


class VhostAdminError(RuntimeError):
    """Neither rabbitmqctl nor the management API could administer the vhost."""


def broker_answers(url: str, timeout_s: float = 3.0) -> str | None:
    """None when an AMQP connection to ``url`` opens, else why not (one line)."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                   timeout=timeout_s)  # type: ignore[arg-type]  # float seconds
    except Exception as exc:  # noqa: BLE001 - any failure means "does not answer"
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return None


class RabbitVhost:
    """``with RabbitVhost(server_url) as vhost: vhost.url`` - created, then deleted."""

    def __init__(self, server_url: str = DEFAULT_URL, *, prefix: str = "billing_test") -> None:
        parts = urlsplit(server_url)
        self.server_url = server_url
        self.user = unquote(parts.username or "guest")
        self.password = unquote(parts.password or "guest")
        self.host = parts.hostname or "127.0.0.1"
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.url = urlunsplit((parts.scheme, parts.netloc, "/" + quote(self.name, safe=""), "", ""))
        self._via = ""  # "rabbitmqctl" or "http", once created

    # --- lifecycle ------------------------------------------------------------------------

    def create(self) -> RabbitVhost:
        errors = []
        if shutil.which("rabbitmqctl"):
            try:
                self._ctl("add_vhost", self.name)
                self._ctl("set_permissions", "-p", self.name, self.user, ".*", ".*", ".*")
                self._via = "rabbitmqctl"
                return self
            except VhostAdminError as exc:
                errors.append(str(exc))
        else:
            errors.append("rabbitmqctl not found")
        try:
            self._http("PUT", f"vhosts/{quote(self.name, safe='')}", {})
            self._http("PUT", f"permissions/{quote(self.name, safe='')}/{quote(self.user, safe='')}",
                       {"configure": ".*", "write": ".*", "read": ".*"})
            self._via = "http"
            return self
        except VhostAdminError as exc:
            errors.append(str(exc))
        raise VhostAdminError(f"cannot create a RabbitMQ vhost: {'; '.join(errors)}")

    def delete(self) -> None:
        if self._via == "rabbitmqctl":
            self._ctl("delete_vhost", self.name)
        elif self._via == "http":
            self._http("DELETE", f"vhosts/{quote(self.name, safe='')}")
        self._via = ""

    def __enter__(self) -> RabbitVhost:
        return self.create()

    def __exit__(self, *_: object) -> None:
        self.delete()

    # --- what a run asks of it -------------------------------------------------------------

    def close_connections(self, reason: str = "chaos: broker connections closed") -> int:
        """Close every client connection of this vhost (server side); returns how many."""
        if self._via == "http":
            conns = self._http("GET", f"vhosts/{quote(self.name, safe='')}/connections") or []
            for conn in conns:
                self._http("DELETE", f"connections/{quote(conn['name'], safe='')}")
            return len(conns)
        listed = self._ctl("list_connections", "-q", "--no-table-headers", "vhost", "pid")
        pids = [line.split("\t")[1] for line in listed.splitlines()
                if line.split("\t")[0] == self.name]
        for pid in pids:
            self._ctl("close_connection", pid, reason)
        return len(pids)

    def queues(self) -> dict[str, dict[str, Any]]:
        """Each queue of the vhost: type, durability, arguments, messages ready/unacked."""
        if self._via == "http":
            rows = self._http("GET", f"queues/{quote(self.name, safe='')}") or []
            return {r["name"]: {"type": r.get("type"), "durable": r.get("durable"),
                                "arguments": r.get("arguments", {}),
                                "messages": r.get("messages", 0)} for r in rows}
        out = self._ctl("list_queues", "-p", self.name, "-q", "--formatter",
                        "json", "name", "type", "durable", "arguments", "messages")
        rows = json.loads(out or "[]")
        return {r["name"]: {"type": r["type"], "durable": r["durable"],
                            "arguments": _arguments(r["arguments"]), "messages": r["messages"]}
                for r in rows}

    def waiting(self, names: list[str]) -> int:
        """Messages ready in these queues (not yet taken by a worker), asked over AMQP (a
        passive declare: cheap enough to poll, unlike starting rabbitmqctl); 0 when the
        broker does not answer or a queue is not declared yet."""
        from kombu import Connection

        total = 0
        try:
            with Connection(self.url, connect_timeout=2) as conn:
                for name in names:
                    channel: Any = conn.channel()  # py-amqp's Channel (celery-types: StdChannel)
                    try:
                        total += channel.queue_declare(queue=name, passive=True).message_count
                    except Exception:  # noqa: BLE001 - not declared yet: nothing waits there
                        pass
                    finally:
                        if channel.is_open:
                            channel.close()
        except Exception:  # noqa: BLE001 - broker down (the fault): nothing to report
            return total
        return total

    # --- the two ways in --------------------------------------------------------------------

    def _ctl(self, *args: str) -> str:
        try:
            res = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VhostAdminError(f"rabbitmqctl {args[0]}: {exc}") from exc
        if res.returncode != 0:
            lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
            raise VhostAdminError(f"rabbitmqctl {args[0]} failed: {lines[-1] if lines else res.returncode}")
        return res.stdout

    def _http(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        url = f"http://{self.host}:{MANAGEMENT_PORT}/api/{path}"
        try:
            res = httpx.request(method, url, auth=(self.user, self.password), timeout=10,
                                json=body if body is not None else None)
        except httpx.HTTPError as exc:
            raise VhostAdminError(f"management API at {self.host}:{MANAGEMENT_PORT}: "
                                  f"{type(exc).__name__}") from exc
        if res.status_code >= 400:
            raise VhostAdminError(f"management API {method} {path}: HTTP {res.status_code}")
        return res.json() if res.content else None


def _arguments(value: Any) -> dict[str, Any]:
    """rabbitmqctl's JSON gives queue arguments as [name, type, value] triples."""
    if isinstance(value, dict):
        return value
    return {item[0]: item[-1] for item in value or [] if isinstance(item, list) and len(item) >= 2}
