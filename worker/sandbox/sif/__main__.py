"""``python -m worker.sandbox.sif``: the local SIF as a process."""

import sys

from worker.sandbox.sif.server import main

sys.exit(main())
