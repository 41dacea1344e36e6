"""``python -m worker.sandbox.finkok``: the local Finkok as a process."""

from worker.sandbox.finkok.server import main

main()
