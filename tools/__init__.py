"""Build-time tools, not part of the installed package: ``python -m tools.NAME`` from the
repository root."""
