"""clipminer: mine labelled action clips out of long videos.

The package never imports torch at import time, so that the command-line entry
point can set threading variables before torch starts its thread pools.
"""

import os

__version__ = "0.1.0"

THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Set (unless the user set them) before torch loads, here and in every worker process:
with OpenMP threads spinning while PyAV decodes, a 720p minute took 77.8 s instead of
9.1 s on 2 cores."""
for _name, _value in THREAD_ENV.items():
    os.environ.setdefault(_name, _value)
