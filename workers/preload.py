"""Imported once by the forkserver before it forks any child.

Every child then starts with numpy, zmq, msgspec, aiohttp and our modules already imported
(perf-floors §5: ~9 ms and ~6 MB per child, against ~200 ms and ~29 MB when spawned).
`gc.freeze()` last: it moves every object created so far out of the collector's reach, so a
child's first full collection does not write to (and thereby copy) the shared pages.
"""

import gc

import aiohttp  # noqa: F401
import msgspec  # noqa: F401
import numpy  # noqa: F401
import psutil  # noqa: F401
import zmq  # noqa: F401
import zmq.asyncio  # noqa: F401

try:  # the event loop of every asyncio child when installed (workers.runtime.run_event_loop)
    import uvloop  # noqa: F401
except ImportError:
    pass

import shared.signals  # noqa: F401
import workers.entry  # noqa: F401
import workers.gateway  # noqa: F401
import workers.gateway_exchange  # noqa: F401
import workers.pool  # noqa: F401
import workers.worker  # noqa: F401

gc.collect()
gc.freeze()
