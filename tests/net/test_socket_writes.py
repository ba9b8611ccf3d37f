"""Writes straight from the sender's task over a real loopback socket: an RPC request's frame
goes out in one non-blocking write when the line is idle, and one larger than the kernel takes
at once finishes through ``send_all`` while frames queued meanwhile wait behind it (Noise nonces
must reach the wire in the order they were spent)."""

from __future__ import annotations

import trio

from bzzz_edge.net import Connection, NetLimits
from bzzz_edge.net._handlers import Handlers
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope
from bzzz_edge.wire.types import SWIM

LIMITS = NetLimits(max_frames_per_second=1e9)


async def _socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, server


def test_requests_and_envelopes_over_a_socket_arrive_whole_and_in_order(secure_pair):
    pair = secure_pair()
    sa, sb = pair.sessions(max_frame_size=LIMITS.max_frame_size)
    seen: list[bytes] = []
    all_seen = trio.Event()
    handlers = Handlers()

    def on_swim(peer, envelope):
        seen.append(envelope.body)
        if len(seen) == 200:
            all_seen.set()

    async def echo(peer, body):
        return body

    handlers.on_rpc("echo", echo, inline=True)
    handlers.on_envelope(SWIM, on_swim)

    async def main():
        left, right = await _socket_pair()
        a = Connection(left, sa, peer_id=pair.b.node_id, initiator=True, remote_ip="127.0.0.1",
                       limits=LIMITS, handlers=Handlers())
        b = Connection(right, sb, peer_id=pair.a.node_id, initiator=False,
                       remote_ip="127.0.0.1", limits=LIMITS, handlers=handlers)
        big = bytes(range(256)) * 3600  # ~900 KiB: more than a socket takes in one write

        async def envelopes():
            for i in range(200):
                assert a.send_nowait(encode_envelope(DirectMessage(*SWIM.key, b"%d" % i)))
                await trio.sleep(0)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.run)
                nursery.start_soon(b.run)
                async with trio.open_nursery() as senders:
                    senders.start_soon(envelopes)
                    for i in range(20):
                        body = big if i % 4 == 0 else b"small %d" % i
                        assert await a.request("echo", body, timeout=20) == body
                await all_seen.wait()
                assert a.close_reason is None and b.close_reason is None
                nursery.cancel_scope.cancel()
        assert seen == [b"%d" % i for i in range(200)]
        assert b.session.counters.malformed == 0

    trio.run(main)
