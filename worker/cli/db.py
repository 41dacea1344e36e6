"""`billing db ...`: schema migrations."""

from __future__ import annotations

import typer

from worker.cli.context import Context, console

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the schema to the latest revision."""
    from worker.db.migrate import upgrade as run_upgrade
    from worker.settings import mask_url_password

    url = Context().settings.database_url
    run_upgrade(url, revision)
    console.print(f"database at {mask_url_password(url)} is at revision {revision}")


@app.command("current")
def current() -> None:
    """Show the schema revision of the database and the code's head."""
    from alembic.migration import MigrationContext

    from worker.db.migrate import current_head

    ctx = Context()
    with ctx.engine.connect() as conn:
        rev = MigrationContext.configure(conn).get_current_revision()
    console.print(f"database: {rev or '(empty)'}  code head: {current_head()}")
