"""Test helpers: a stamped invoice row, and raw HTTP over a socket for the size tests."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.csd import sandbox_pac_csd
from worker.cfdi.factory import MEXICO_CITY
from worker.cfdi.tfd import add_tfd
from worker.db.models import Invoice, utcnow


def stamp_row(sessions: sessionmaker[Session], invoice_id: str) -> tuple[str, bytes]:
    """Make the invoice stamped as the pipeline would: TFD signed by the sandbox PAC."""
    sat_uuid = str(uuid.uuid4()).upper()
    fecha = datetime.now(MEXICO_CITY).strftime("%Y-%m-%dT%H:%M:%S")
    with sessions.begin() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv is not None
        stamped = add_tfd(inv.xml, uuid=sat_uuid, fecha_timbrado=fecha, pac=sandbox_pac_csd())
        inv.state = "stamped"
        inv.stamped_xml = stamped
        inv.sat_uuid = sat_uuid
        inv.fecha_timbrado = fecha
        inv.stamped_at = utcnow()
        inv.next_attempt_at = None
    return sat_uuid, stamped


def raw_exchange(base_url: str, head: bytes, *parts: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send ``head`` then ``parts`` (no more), and read one response: (status, body).

    The body is deliberately left unfinished by callers: an answer proves the server
    decided without waiting for the rest.
    """
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a response: {data!r}"
            data += chunk
        header, _, body = data.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            body += chunk
        return status, body[:length]
