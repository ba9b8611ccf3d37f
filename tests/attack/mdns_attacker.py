"""An insider on the LAN announcing fake nodes over mDNS; run it inside a network namespace.

Does network I/O. Usage: mdns_attacker.py --fingerprint FP --ip IP --count N

Lines carry ``t``, time.monotonic() (comparable with the parent's on Linux).

Opens N listening sockets on IP (a DialSink) and registers one fake bzzz-edge service per
socket, with the network's public fingerprint. Reports on stdout as JSON lines:
  {"event": "registered", "count": n}
  {"event": "dial", "source": ip, "port": p}      each time someone dials a fake
  {"event": "left"}                               after "leave" on stdin: goodbye packets sent
Exits when stdin closes.
"""

import argparse
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

_lock = threading.Lock()


def emit(event: str, **fields: object) -> None:
    with _lock:
        print(json.dumps({"event": event, **fields, "t": time.monotonic()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    path = Path(__file__).resolve().parent.parent / "_harness" / "insider.py"
    spec = importlib.util.spec_from_file_location("_bzzz_test_harness_insider", path)
    assert spec is not None and spec.loader is not None
    insider = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(insider)

    sink = insider.DialSink(args.count, args.ip,
                            on_dial=lambda source, port: emit("dial", source=source, port=port))
    fakes = insider.FakeMdns(args.fingerprint, [(args.ip, p) for p in sink.ports],
                             interface=args.ip)
    fakes.register()
    emit("registered", count=args.count)
    for line in sys.stdin:
        if line.strip() == "leave":
            fakes.close()
            emit("left")
    sink.close()


if __name__ == "__main__":
    main()
