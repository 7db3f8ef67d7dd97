"""clipminer: mine labelled action clips out of long videos.

The package never imports torch at import time, so that the command-line entry
point can set threading variables before torch starts its thread pools.
"""

__version__ = "0.1.0"
