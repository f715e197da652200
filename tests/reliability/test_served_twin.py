"""The served twin against hostile clients, over real TCP sockets and a real pty.

Whatever one client writes (a negative or non-digit block length, a line that never
ends, a block header declaring gigabytes, hundreds of idle connections), the rig keeps
answering every other client, and the serial line keeps answering after the offender.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time

import pytest

from labctl_sims.scpi import MAX_TEXT_BYTES, MessageFramer, MessageTooLarge
from labctl_sims.server import RigServer, TwinRig

IDN = b"LABCTL,ACB-TWIN,TWIN-PCM-S0-16X16,0.1.0\n"


@pytest.fixture
def server():
    with RigServer(TwinRig.build("pcm", seed=0, rows=16, cols=16), max_connections=8, idle_timeout_s=1.0) as served:
        yield served


def connect(server: RigServer, name: str = "board") -> socket.socket:
    sock = socket.create_connection(server.tcp[name].server_address[:2], timeout=2.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def ask(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(message)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def pty_ask(fd: int, message: bytes, timeout_s: float = 2.0) -> bytes:
    os.write(fd, message)
    reply, deadline = b"", time.monotonic() + timeout_s
    while not reply.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            reply += os.read(fd, 65536)
    return reply


def open_pty(server: RigServer, name: str = "board") -> int:
    import tty

    fd = os.open(server.serial_path(name), os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def every_instrument_answers(server: RigServer) -> None:
    for name, query in (("board", b"*IDN?\n"), ("smu", b"*IDN?\n"), ("temperature", b"KRDG? A\n")):
        with connect(server, name) as sock:
            assert ask(sock, query).endswith(b"\n"), name


@pytest.mark.parametrize("poison", [b"A" * 200 + b"#3-99\n", b"PROG:ARR #3-99\n", b"#9-\n", b"READ:CELL? #2-1,0\n"])
def test_a_negative_block_length_is_an_error_not_a_frozen_rig(server, poison):
    with connect(server) as offender:
        offender.sendall(poison)
        assert ask(offender, b"SYST:ERR?\n").startswith((b"-113,", b"-161,", b"-224,"))
        assert ask(offender, b"*IDN?\n") == IDN
    every_instrument_answers(server)


@pytest.mark.parametrize("poison", [b"PROG:ARR #1x\n", b"PROG:ROW 0,#2ab\n", b"MVM? #1\xff\n"])
def test_a_non_digit_block_length_is_a_scpi_error_on_tcp_and_on_a_pty(server, poison):
    with connect(server) as sock:
        sock.sendall(poison)
        assert ask(sock, b"SYST:ERR?\n").startswith(b"-1")
        assert ask(sock, b"*IDN?\n") == IDN
    fd = open_pty(server)
    try:
        os.write(fd, poison)
        assert pty_ask(fd, b"SYST:ERR?\n").startswith(b"-1")
        assert pty_ask(fd, b"*IDN?\n") == IDN
    finally:
        os.close(fd)


def test_a_pty_survives_random_bytes(server):
    import random

    fd = open_pty(server)
    try:
        rng = random.Random(14)
        for _ in range(200):
            os.write(fd, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        os.write(fd, b"\n" * 600)  # ends any block header the garbage opened (at most 512 bytes here)
        time.sleep(0.5)  # let the garbage through, then clear its errors
        while select.select([fd], [], [], 0.05)[0]:
            os.read(fd, 65536)
        os.write(fd, b"\n*CLS\n")
        assert pty_ask(fd, b"*IDN?\n").endswith(IDN)
    finally:
        os.close(fd)


def test_a_line_without_newline_is_capped_and_scanned_once():
    framer = MessageFramer(max_block=512)
    chunk = b"x" * 4096
    fed = 0
    with pytest.raises(MessageTooLarge):
        while True:
            framer.feed(chunk)
            fed += len(chunk)
    assert fed <= MAX_TEXT_BYTES
    framer.clear()  # as the session does
    assert framer.feed(b"*IDN?\n") == [b"*IDN?\n"]


def test_a_dribbled_line_is_scanned_from_where_the_last_chunk_ended():
    framer = MessageFramer(max_block=512)
    for _ in range(1000):
        framer.feed(b"abc ")
    assert framer._pos == 4000  # the scan resumes there: each byte is looked at once
    assert framer.feed(b"\n") == [b"abc " * 1000 + b"\n"]


def test_a_newline_ends_a_message_even_inside_an_unclosed_quote():
    framer = MessageFramer(max_block=512)
    assert framer.feed(b":SENS:FUNC 'CURR\n*IDN?\n") == [b":SENS:FUNC 'CURR\n", b"*IDN?\n"]


def test_a_huge_block_header_is_refused_before_its_bytes(server):
    with connect(server) as offender, connect(server) as bystander:
        reply = ask(offender, b"PROG:ARR #9999999999")
        assert reply.startswith(b'-223,"Too much data')
        assert offender.recv(1) == b""  # the session is dropped
        assert ask(bystander, b"*IDN?\n") == IDN


def test_a_flood_without_newline_does_not_stall_other_clients(server):
    with connect(server) as offender, connect(server) as bystander:
        offender.settimeout(5.0)
        sent = 0
        try:
            while sent < 8 * 2**20:
                offender.sendall(b"x" * 65536)
                sent += 65536
        except OSError:
            pass  # dropped once past the cap
        assert ask(bystander, b"*IDN?\n") == IDN  # within the socket's 2 s timeout, a driver's too
    assert sent < 8 * 2**20
    every_instrument_answers(server)


def test_an_oversized_message_on_a_pty_is_flushed_and_the_line_answers_again(server):
    fd = open_pty(server)
    try:
        os.write(fd, b"PROG:ARR #9999999999" + b"\0" * 4096)
        time.sleep(0.5)
        assert pty_ask(fd, b"SYST:ERR?\n").startswith(b'-223,"Too much data')
        assert pty_ask(fd, b"*IDN?\n") == IDN
    finally:
        os.close(fd)


def test_connections_are_capped_and_idle_ones_closed(server):
    idle = [connect(server) for _ in range(8)]
    refused = connect(server)
    refused.settimeout(2.0)
    assert refused.recv(1) == b""  # past the cap: closed at once, no thread spent
    refused.close()
    for sock in idle:
        assert sock.recv(1) == b""  # closed by the server after 1 s of silence
        sock.close()
    time.sleep(0.2)
    with connect(server) as sock:
        assert ask(sock, b"*IDN?\n") == IDN


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serving_beyond_loopback_warns(tmp_path, host, warned):
    process = subprocess.Popen([sys.executable, "-m", "labctl", "sim", "serve", "--size", "8x8", "--host", host],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:  # up to the line that says the rig is ready
            if "Ctrl-C stops the rig" in line:
                break
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert ("reachable from other hosts" in err) is warned, err
