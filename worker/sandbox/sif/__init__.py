"""The local SIF: ``config`` (switches, SIF's exact answers), ``state`` (what it recorded
and holds), ``server`` (the HTTP shell: ``SifSandbox``, ``main``).

    python -m worker.sandbox.sif --port 8702     # as a process
"""

from worker.sandbox.sif.config import (
    BODY_401,
    BODY_404,
    BODY_409,
    DEFAULT_BASE_PATH,
    DEFAULT_SECRET,
    FAULTS,
    SandboxConfig,
)
from worker.sandbox.sif.server import SifSandbox, main

__all__ = [
    "BODY_401",
    "BODY_404",
    "BODY_409",
    "DEFAULT_BASE_PATH",
    "DEFAULT_SECRET",
    "FAULTS",
    "SandboxConfig",
    "SifSandbox",
    "main",
]
