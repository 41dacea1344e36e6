"""API keys: make, look up, revoke. Only the SHA-256 of a key's secret is ever stored.

A key reads ``bk_<prefix>_<secret>``: 12 hex characters to find the row, then 32 random
bytes (URL-safe base64). The secret has 256 bits of entropy, so a plain SHA-256 is as
good as a slow password hash here, and costs microseconds per request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import ApiKey, new_id, utcnow
from worker.invoices.validation import InvoiceRefused, check_ids

ALL_EMPRESAS = "*"
KEY_RE = re.compile(r"^bk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
MAX_NAME_LENGTH = 128
# last_used_at is refreshed at most this often: a write per request would cost more than
# the lookup itself (on SQLite every write takes the database lock).
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Compared against when no row matches, so an unknown prefix costs the same as a bad secret.
_NO_ROW_HASH = hashlib.sha256(b"no such key").hexdigest()

Empresas = list[str] | str  # a list of empresaRefIds, or ALL_EMPRESAS


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, prefix and name, never its secret."""

    key_id: str
    prefix: str
    name: str
    empresa_ref_ids: Empresas

    def allows(self, empresa_ref_id: str) -> bool:
        return self.empresa_ref_ids == ALL_EMPRESAS or empresa_ref_id in self.empresa_ref_ids

    @property
    def label(self) -> str:
        return f"{self.prefix} ({self.key_id})"


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    name: str
    prefix: str
    key: str  # shown once, then gone
    empresa_ref_ids: Empresas


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def check_empresas(empresas: list[str], all_empresas: bool) -> Empresas:
    """The empresaRefIds a new key may use, checked with intake's own id rule."""
    if all_empresas:
        if empresas:
            raise ValueError("give --empresa IDs or --all-empresas, not both")
        return ALL_EMPRESAS
    if not empresas:
        raise ValueError("a key needs at least one --empresa ID (or --all-empresas)")
    for empresa in empresas:
        try:
            check_ids(empresa, "-", None)
        except InvoiceRefused as exc:
            raise ValueError(exc.message) from None
    return sorted(set(empresas))


def create_key(sessions: sessionmaker[Session], name: str, empresas: Empresas) -> NewKey:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"the key name must be 1-{MAX_NAME_LENGTH} characters")
    for _ in range(5):  # a prefix collision (48 bits) is rare; just draw again
        prefix = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        key_id = new_id()
        try:
            with sessions.begin() as session:
                session.add(
                    ApiKey(
                        id=key_id,
                        name=name,
                        prefix=prefix,
                        secret_sha256=hash_secret(secret),
                        empresa_ref_ids=empresas,
                    )
                )
        except IntegrityError:
            continue
        return NewKey(key_id, name, prefix, f"bk_{prefix}_{secret}", empresas)
    raise RuntimeError("could not draw an unused key prefix")


def revoke_key(sessions: sessionmaker[Session], key_id_or_prefix: str) -> ApiKey | None:
    """Revoke by id or prefix; an already revoked key keeps its first revocation time."""
    with sessions.begin() as session:
        row = session.scalar(
            select(ApiKey).where(
                (ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix)
            )
        )
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
        return row


def list_keys(sessions: sessionmaker[Session]) -> list[ApiKey]:
    with sessions() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def authenticate(
    sessions: sessionmaker[Session], presented: str, *, now: datetime | None = None
) -> Principal | None:
    """The key's principal, or None if the key is malformed, unknown or revoked."""
    match = KEY_RE.match(presented)
    if match is None:
        return None
    prefix, secret = match.groups()
    now = now or utcnow()
    columns = (ApiKey.id, ApiKey.name, ApiKey.secret_sha256, ApiKey.empresa_ref_ids,
               ApiKey.revoked_at, ApiKey.last_used_at)
    with sessions() as session:  # plain columns, no ORM identity map: this runs per request
        row = session.execute(select(*columns).where(ApiKey.prefix == prefix)).first()
    expected = row.secret_sha256 if row is not None else _NO_ROW_HASH
    matches = hmac.compare_digest(hash_secret(secret), expected)
    if row is None or not matches or row.revoked_at is not None:
        return None
    principal = Principal(row.id, prefix, row.name, row.empresa_ref_ids)
    stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
    if stale:
        with sessions.begin() as session:
            session.execute(update(ApiKey).where(ApiKey.id == principal.key_id).values(last_used_at=now))
    return principal
