"""The local Finkok: ``server`` is the HTTP shell (``FinkokSandbox``, ``main``); ``app``,
``config``, ``ledger``, ``documents`` and one module per Finkok service (``stamping``,
``cancel``, ``accounts``) are its behaviour; ``wire`` is Finkok's SOAP wire format,
server side.

    python -m worker.sandbox.finkok --port 8701     # as a process
"""

from worker.sandbox.finkok.server import FinkokSandbox, main

__all__ = ["FinkokSandbox", "main"]
