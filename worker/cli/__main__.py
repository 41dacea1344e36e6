"""`python -m worker.cli …` is `billing …` (how `billing worker` starts its pools)."""

from worker.cli import app

app()
