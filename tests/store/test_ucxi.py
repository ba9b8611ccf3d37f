"""UCXI over HTTP against a real node process: every operation, the error shapes, the body
limit enforced before the body is read, and hypothesis over bad input of every kind."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.slow, pytest.mark.lone_node]

LIMIT = 65536
DOC = "ucxl://gpt4:architect@chorus:design/*^/src/main.go"


def q(address: str) -> str:
    return "/ucxi/v1/" + urllib.parse.quote(address, safe="")


class Client:
    def __init__(self, api: str) -> None:
        host, port = api.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(host, self.port, timeout=20)

    def __call__(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):  # a server may close a kept-alive connection between requests
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
                if attempt == 2:
                    raise
        data = response.read()
        if response.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@pytest.fixture
def node(initialised_node, spawn_node):
    process = spawn_node(initialised_node, "--set", f"storage.max_content_bytes={LIMIT}")
    process.wait_ready()
    return process


def test_operations_round_trip_with_metadata(node):
    c = Client(node.api)
    status, headers, body = c("PUT", q(DOC), b"package main\n", {"Content-Type": "text/x-go"})
    assert status == 201 and json.loads(body)["address"] == DOC.replace("*^", "*1")
    assert headers["x-ucxl-version"] == "1"
    c("PUT", q(DOC), b"package main // v2\n", {"Content-Type": "text/x-go"})
    status, headers, body = c("GET", q(DOC))
    assert status == 200 and body == b"package main // v2\n"
    assert headers["content-type"] == "text/x-go" and headers["x-ucxl-version"] == "2"
    assert headers["x-content-type-options"] == "nosniff" and len(headers["x-ucxl-hash"]) == 64
    status, _, body = c("GET", q(DOC.replace("*^", "~~1")))
    assert status == 200 and body == b"package main\n"
    status, _, body = c("GET", "/ucxi/v1/?address=" + urllib.parse.quote(DOC) + "&meta=1")
    meta = json.loads(body)
    assert status == 200 and meta["version"] == 2 and meta["media_type"] == "text/x-go"
    status, headers, body = c("HEAD", q(DOC))
    assert status == 200 and body == b"" and headers["x-ucxl-version"] == "2"
    status, _, body = c("GET", q(DOC) + "?history=1")
    assert [v["version"] for v in json.loads(body)["versions"]] == [1, 2]
    status, _, body = c("POST", q(DOC), b"func main() {}\n")
    assert status == 201
    assert c("GET", q(DOC))[2] == b"package main // v2\nfunc main() {}\n"
    status, _, body = c("GET", q("ucxl://*:architect@chorus:*/*^"))
    assert status == 200 and [i["version"] for i in json.loads(body)["items"]] == [3]
    status, _, body = c("ANNOUNCE", q(DOC))
    assert status == 200 and json.loads(body)["announced"] is True
    status, _, body = c("POST", "/ucxi/v1/announce?address=" + urllib.parse.quote(DOC))
    assert status == 200 and json.loads(body)["version"] == 3
    status, _, body = c("DELETE", q(DOC))
    assert status == 200 and json.loads(body)["deleted"] is True
    status, _, body = c("GET", q(DOC))
    assert status == 404 and json.loads(body)["error"]["deleted"] is True
    assert c("GET", q(DOC.replace("*^", "*2")))[0] == 200  # history kept
    status, _, body = c("GET", "/api/v1/store")
    assert json.loads(body)["versions"] == 4
    metrics = c("GET", "/metrics")[2].decode()
    assert "bzzz_edge_store_versions 4.0" in metrics
    assert "bzzz_edge_store_addresses 1.0" in metrics and "bzzz_edge_store_full 0.0" in metrics


def test_errors_have_codes_positions_and_counts(node):
    c = Client(node.api)
    c("PUT", q(DOC), b"x")

    def error(method, path, body=None, headers=None):
        status, _, raw = c(method, path, body, headers)
        return status, json.loads(raw)["error"]

    status, err = error("GET", q("ucxl://a:b@c:d/*0/x"))
    assert (status, err["code"], err["position"]) == (400, "bad_address", 16)
    status, err = error("GET", q(DOC.replace("*^", "*7")))
    assert (status, err["code"], err["versions"]) == (404, "no_such_version", 1)
    status, err = error("GET", q("ucxl://a:b@c:d/*^/never"))
    assert (status, err["code"], err["versions"]) == (404, "not_found", 0)
    status, err = error("PATCH", q(DOC), b"x")
    assert (status, err["code"]) == (405, "method_not_allowed")
    for address in ("ucxl://*:b@c:d/*^/x", "ucxl://a:b@c:d/*1/x", "ucxl://a:b@c:d/^^/x"):
        status, err = error("PUT", q(address), b"x")
        assert (status, err["code"]) == (409, "not_writable") and err["position"] > 0
    status, err = error("PUT", q(DOC), bytes(LIMIT + 1))
    assert (status, err["code"], err["limit"]) == (413, "too_large", LIMIT)
    status, err = error("GET", "/ucxi/v1/")
    assert (status, err["code"]) == (400, "bad_request")
    status, err = error("PUT", q(DOC), b"x", {"Content-Type": "no slash"})
    assert (status, err["code"]) == (400, "bad_request")


def test_body_over_the_limit_is_refused_before_it_is_sent(node):
    host, port = node.api.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"PUT {q(DOC)} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**12}\r\n"
                      "\r\n").encode())  # and never a byte of the body
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    c = Client(node.api)
    assert c("GET", "/health/live")[0] == 200


ADDRESS_PARTS = st.sampled_from(["ucxl://", "a", ":", "@", "/", "*", "^", "~", "..", "%", "%2e",
                                 "%zz", "?", "#", " ", "\u00e9", "any", "*^", "~~", "^^0", "9" * 10,
                                 "x" * 70, "/"])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_bad_input_of_every_kind_gets_a_clear_answer(node, data):
    c = _client(node)
    address = "".join(data.draw(st.lists(ADDRESS_PARTS, max_size=12)))
    if data.draw(st.booleans()):
        address = "ucxl://a:b@p:t/*^" + address
    method = data.draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "ANNOUNCE",
                                        "PATCH", "OPTIONS", "BREW"]))
    body = data.draw(st.one_of(st.none(), st.binary(max_size=256),
                               st.just(bytes(LIMIT + 1))))
    headers = {}
    if data.draw(st.booleans()):
        headers["Content-Type"] = data.draw(st.sampled_from(
            ["text/plain", "", "x" * 300, "application/json; charset=utf-8", "a/b\x7f"]))
    encoded = urllib.parse.quote(address, safe="") if data.draw(st.booleans()) else \
        urllib.parse.quote(address, safe="/:@*^~%")
    path = data.draw(st.sampled_from(["/ucxi/v1/" + encoded,
                                      "/ucxi/v1/?address=" + urllib.parse.quote(address),
                                      "/ucxi/v1/announce?address=" + urllib.parse.quote(address)]))
    try:
        status, _, raw = c(method, path, body, headers)
    except ValueError:  # http.client refuses to send it (a control character in a header)
        return
    except OSError:  # the node answered 413 and closed before the oversized body was sent
        assert body is not None and len(body) > LIMIT
        return
    assert status < 500 or status in (503, 507), (status, raw)
    if status >= 400 and method != "HEAD":
        error = json.loads(raw)["error"]
        assert isinstance(error["code"], str) and error["message"]
        if error["code"] == "bad_address":
            assert isinstance(error["position"], int)


_clients: dict[str, Client] = {}


def _client(node) -> Client:
    if node.api not in _clients:
        _clients[node.api] = Client(node.api)
    return _clients[node.api]
