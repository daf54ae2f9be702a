"""Issue 25, third round, item 2: a request body is limited before it is read — small without
credentials, MOEQ_MAX_BODY_MB with them — so anonymous 300 MB posts are refused (413, one line)
without the server holding them, whether the size is declared or the body is chunked."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time

import pytest

from moeq.app.body_limit import BodyLimit
from tests.security.web import login, team_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with team_server(tmp_path_factory.mktemp("bodies"), MOEQ_MAX_BODY_MB="1") as (base, settings, store):
        yield base


def _raw(base: str, head: str, chunks=(), chunk_size: int = 0) -> tuple[str, int]:
    """Send a request by hand; (status line and body, bytes of body sent before the answer came)."""
    host, port = base.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server already answered
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break
            sent += len(chunk)
        sock.settimeout(30)
        answer = b""
        try:
            while piece := sock.recv(65536):  # the server closes after its answer
                answer += piece
        except ConnectionResetError:  # it closed with our unread bytes pending: the kernel resets
            answer = answer or b"RESET"
    return answer.decode("latin-1"), sent


def test_an_anonymous_declared_huge_body_is_refused_unread(server):
    started = time.monotonic()
    head = ("POST /gradio_api/queue/join HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            "content-length: 300000000\r\n\r\n")
    answer, _ = _raw(server, head)  # not one byte of the 300 MB is sent
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "without credentials" in answer and time.monotonic() - started < 10


def test_an_anonymous_chunked_body_is_cut_at_the_small_limit(server):
    head = ("POST /gradio_api/queue/join HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            "transfer-encoding: chunked\r\n\r\n")
    chunks = (b"x" * 65536 for _ in range(4096))  # 256 MB if it were all read
    answer, sent = _raw(server, head, chunks)
    assert answer.startswith(("HTTP/1.1 413", "RESET")), answer[:200]  # the 413 itself: the test below
    assert sent < 16 * 2**20, sent  # the server stopped reading long before the end


def test_a_signed_in_user_may_send_up_to_max_body_mb(server):
    alice = login(server, "alice")
    medium = alice.post("/gradio_api/queue/join", content=json.dumps({"data": ["x" * 200_000]}),
                        headers={"content-type": "application/json"})
    assert medium.status_code != 413, medium.text  # over the anonymous limit, under MOEQ_MAX_BODY_MB=1
    big = alice.post("/gradio_api/queue/join", content=b"x" * (2 * 2**20), headers={"content-type": "application/json"})
    assert big.status_code == 413 and "MOEQ_MAX_BODY_MB" in big.text


def test_a_chunked_body_over_the_limit_is_never_handed_on():
    reached, pulled = [], []
    sent: list[dict] = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 4096, "more_body": True}  # an endless body

    async def send(message):
        sent.append(message)

    limit = BodyLimit(inner, limit_bytes=2**20, has_credentials=lambda scope, headers: False,
                      anonymous_bytes=16384)
    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join",
             "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(limit(scope, receive, send))
    assert not reached and len(pulled) == 5  # 5 × 4 KiB read, then refused
    assert sent[0]["status"] == 413
