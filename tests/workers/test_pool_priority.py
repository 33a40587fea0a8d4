"""The pool member runs ahead of the rest of the tree where the process may raise its priority:
the thread that asks, and the threads it starts afterwards (zmq's I/O thread, which receives the
requests), get the lower nice value; where it may not, nothing changes and nothing fails."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import json, os
import zmq
from workers.pool import raise_priority
def threads():
    return {int(t) for t in os.listdir(f"/proc/{os.getpid()}/task")}
earlier = threads()  # (the interpreter's and numpy's: they keep theirs)
before = os.getpriority(os.PRIO_PROCESS, 0)
ok = raise_priority(3)
after = os.getpriority(os.PRIO_PROCESS, 0)
ctx = zmq.Context()
ctx.socket(zmq.ROUTER).bind("inproc://p")  # starts zmq's I/O thread
io = threads() - earlier
# field 19 of a thread's stat is its nice value
io_nice = [int(open(f"/proc/{os.getpid()}/task/{t}/stat").read().rsplit(")", 1)[1].split()[16]) for t in io]
print(json.dumps({"ok": ok, "before": before, "after": after, "threads": io_nice}))
"""


def test_the_pool_raises_its_priority_for_itself_and_its_later_threads_or_leaves_it() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    r = json.loads(out.stdout)
    if r["ok"]:
        assert r["after"] == r["before"] - 3
        assert r["threads"] and all(n == r["after"] for n in r["threads"])
    else:  # not permitted here: unchanged
        assert r["after"] == r["before"]
