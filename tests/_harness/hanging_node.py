"""A real node process with one extra component that hangs when asked to stop.

Usage: hanging_node.py MODE TIMEOUT [bzzz-edge run options...]
MODE is ``cancellable`` (awaits forever: the shutdown manager can cut it off) or ``blocking``
(blocks the event loop in a system call: only the hard deadline can end the process).
"""

import sys
import time

import trio

from bzzz_edge.cli import _config_from, _parser
from bzzz_edge.logs import setup_logging
from bzzz_edge.node import Node, run_node

mode, timeout = sys.argv[1], float(sys.argv[2])
args = _parser().parse_args(["run", *sys.argv[3:]])
config = _config_from(args)
setup_logging(config["log.level"], config["log.format"], config.secrets())
node = Node.load(config)


async def hang() -> None:
    if mode == "blocking":
        time.sleep(3600)
    await trio.sleep_forever()


node.shutdown.register("hanging-component", hang, priority=10, timeout=timeout)
sys.exit(run_node(node))
