"""An instrument that never stops talking: a flood of bytes with no newline, or a trickle
that keeps every per-chunk timeout alive. A read ends in a typed driver error within
its timeout (an overall deadline), holding at most ``MAX_REPLY_LINE`` bytes."""

from __future__ import annotations

import os
import socket
import threading
import time
import tty

import pytest

from labctl_drivers.errors import DriverError
from labctl_drivers.transport import MAX_REPLY_LINE, SerialTransport, VisaTransport

TIMEOUT_S = 1.0
GUARD_S = 20.0  # far beyond the deadline: only a read that never ends comes near it


def talker(send, pattern: str, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            if pattern == "flood":
                send(b"x" * 65536)
            else:
                send(b"x")
                time.sleep(0.05)
    except OSError:
        pass


@pytest.fixture(params=["tcp", "pty"])
def link(request):
    stop = threading.Event()
    if request.param == "tcp":
        server = socket.create_server(("127.0.0.1", 0))

        def serve(pattern):
            connection, _ = server.accept()
            talker(connection.sendall, pattern, stop)
            connection.close()

        def open_link(pattern):
            threading.Thread(target=serve, args=(pattern,), daemon=True).start()
            return VisaTransport(f"TCPIP::127.0.0.1::{server.getsockname()[1]}::SOCKET", timeout_s=TIMEOUT_S)

        yield open_link
        server.close()
    else:
        master, slave = os.openpty()
        tty.setraw(slave)

        def open_link(pattern):
            threading.Thread(target=talker, args=(lambda b: os.write(master, b), pattern, stop), daemon=True).start()
            return SerialTransport(os.ttyname(slave), timeout_s=TIMEOUT_S)

        yield open_link
        stop.set()
        time.sleep(0.1)
        os.close(master)
        os.close(slave)
    stop.set()


@pytest.mark.parametrize("pattern", ["flood", "trickle"])
def test_a_read_from_an_endless_talker_ends_in_a_typed_error(link, pattern):
    transport = link(pattern)
    outcome: list[BaseException | bytes] = []

    def read():
        try:
            outcome.append(transport.read_line())
        except BaseException as err:  # noqa: BLE001 - the test inspects it
            outcome.append(err)

    reader = threading.Thread(target=read, daemon=True)
    began = time.monotonic()
    reader.start()
    reader.join(GUARD_S)
    assert not reader.is_alive(), "read_line never returned"
    assert isinstance(outcome[0], DriverError), outcome
    assert time.monotonic() - began < GUARD_S
    if pattern == "flood":
        assert "longer than" in str(outcome[0]) and str(MAX_REPLY_LINE) in str(outcome[0])
    else:
        assert "within" in str(outcome[0])
    transport.close()
