"""One connection's protocol without sockets: two sessions wired back to back."""

from __future__ import annotations

import msgpack
import pytest

from bzzz_edge.errors import RemoteProtocolError
from bzzz_edge.wire.envelope import DirectMessage
from bzzz_edge.wire.session import (
    EnvelopeReceived,
    HelloReceived,
    Malformed,
    RequestReceived,
    ResponseReceived,
    Unhandled,
)
from bzzz_edge.wire.types import SWIM


def _wire(sender, frames):
    return sender.seal(frames)


def test_hello_request_and_response_are_matched(secure_pair):
    a, b = secure_pair().sessions()
    assert b.receive_data(_wire(a, [a.hello_frame({"port": 7340, "name": "a"})])) == [
        HelloReceived({"port": 7340, "name": "a"})]
    request_id, frame = a.request_frame("echo", b"hi")
    (request,) = b.receive_data(_wire(a, [frame]))
    assert request == RequestReceived(request_id, "echo", b"hi")
    reply = b.response_frame(request_id, True, b"hi back")
    assert a.receive_data(_wire(b, [reply])) == [ResponseReceived(request_id, True, b"hi back")]
    # The same answer again, or one to a request never made, is stray and dropped.
    assert a.receive_data(_wire(b, [reply, b.response_frame(999, True, b"")])) == []
    assert a.counters.stray_responses == 2


def test_a_late_answer_after_cancel_is_stray(secure_pair):
    a, b = secure_pair().sessions()
    request_id, _frame = a.request_frame("slow", b"")
    a.cancel_request(request_id)
    assert a.receive_data(_wire(b, [b.response_frame(request_id, True, b"late")])) == []
    assert a.pending_requests == 0


def test_service_envelopes_and_unknown_types(secure_pair):
    a, b = secure_pair().sessions()
    swim = a.frame(DirectMessage(*SWIM.key, b"body"))
    other = a.frame(DirectMessage("future.thing", 3, b""))
    events = b.receive_data(_wire(a, [swim, other, a.keepalive_frame()]))
    assert events == [EnvelopeReceived(DirectMessage(*SWIM.key, b"body")),
                      Unhandled("future.thing", 3)]
    assert b.counters.unknown == 1 and b.counters.frames_in == 3


def test_malformed_envelopes_are_counted_then_fatal(secure_pair):
    a, b = secure_pair().sessions(max_malformed=3)
    garbage = a.frame_payload(b"\xc1 not msgpack")
    assert [type(e) for e in b.receive_data(_wire(a, [garbage, garbage]))] == [Malformed] * 2
    with pytest.raises(RemoteProtocolError, match="3 malformed envelopes"):
        b.receive_data(_wire(a, [garbage]))


def test_hello_without_a_port_or_twice_is_fatal(secure_pair):
    a, b = secure_pair().sessions()
    with pytest.raises(RemoteProtocolError, match="no valid port"):
        b.receive_data(_wire(a, [a.hello_frame({"port": 0})]))
    a, b = secure_pair().sessions()
    b.receive_data(_wire(a, [a.hello_frame({"port": 1})]))
    with pytest.raises(RemoteProtocolError, match="second hello"):
        b.receive_data(_wire(a, [a.hello_frame({"port": 1})]))


def test_overlong_method_names_are_cut_not_fatal(secure_pair):
    a, b = secure_pair().sessions()
    body = msgpack.packb([5, "x" * 10_000, b""])
    (event,) = b.receive_data(_wire(a, [a.frame(DirectMessage("rpc.req", 1, body))]))
    assert isinstance(event, RequestReceived) and len(event.method) == 128
