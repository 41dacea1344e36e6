"""The `billing` command: one entry point for operators and integrators."""

from __future__ import annotations

import typer

from worker.cli import (
    api,
    breaker_cmd,
    cancel_cmd,
    db,
    enqueue,
    finkok_cmd,
    flower_cmd,
    health_cmd,
    invoices,
    metrics_cmd,
    reconcile_cmd,
    repair,
    run,
    sample_cmd,
    settings_cmd,
    stats_cmd,
)
from worker.cli.errors import BillingGroup
from worker.cli.global_options import global_options

app = typer.Typer(
    name="billing",
    help="Queue-driven CFDI 4.0 billing worker: stamp through Finkok, report to SIF.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # never print settings (secrets) in a traceback
    cls=BillingGroup,  # infrastructure faults: one line, exit 2 (--debug: the traceback)
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(global_options)
app.command("config")(settings_cmd.show_config)
app.add_typer(db.app, name="db")
app.command("enqueue")(enqueue.enqueue)
app.command("worker")(run.worker)
app.command("beat")(run.beat)
app.command("sandbox")(run.sandbox)
app.command("demo")(run.demo)
app.command("api")(api.serve)
app.add_typer(api.keys_app, name="api-keys")
app.add_typer(invoices.app, name="invoices")
app.command("reprocess")(repair.reprocess)
app.command("resend")(repair.resend)
app.command("stats")(stats_cmd.stats)
app.command("sample")(sample_cmd.sample)
app.command("flower")(flower_cmd.flower)
app.command("metrics")(metrics_cmd.metrics)
app.command("health")(health_cmd.health)
app.command("reconcile")(reconcile_cmd.reconcile)
app.add_typer(finkok_cmd.app, name="finkok")
app.add_typer(breaker_cmd.app, name="breaker")
app.command("cancel")(cancel_cmd.cancel)
