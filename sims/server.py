"""Serving a twin rig on real transports: TCP sockets and pty serial devices.

One ``TwinRig`` is one chip with its board, SMU and temperature controller. Every
device is served on a TCP port (several clients at once, one session each) and on a
pty (a serial line: one client at a time). All of a rig's devices share one lock,
because they share one chip. Wire faults are injected here, on the way out:

- ``delay``: the reply is held back for ``DELAY_S`` (shorter than a driver's timeout);
- ``drop``: the command is executed, the reply is lost;
- ``garble``: the reply arrives damaged so that its framing shows it (a non-ASCII
  byte, or a block that is cut short);
- ``disconnect``: the command is executed and the connection is closed instead of a
  reply (TCP; on a pty, which cannot hang up, it acts as ``drop``).

``RigServer.outage`` is the unplugged cable: every connection drops, and for a while
nothing answers (TCP refuses connections; a pty disappears and comes back under the
same stable link, as a USB serial adapter does under ``/dev/serial/by-id``).
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import socketserver
import threading
import time
import tty
from dataclasses import dataclass, field

from labctl_sims.board import BoardTwin
from labctl_sims.chip import ChipModel
from labctl_sims.scpi import MessageTooLarge, ScpiDevice, Session
from labctl_sims.smu import SmuTwin
from labctl_sims.temperature import TemperatureTwin

FAULT_KINDS = ("delay", "drop", "garble", "disconnect")
DELAY_S = 0.2
MAX_CONNECTIONS = 16  # per device: a rig has a handful of clients, never hundreds
IDLE_TIMEOUT_S = 600.0  # a TCP client silent this long is disconnected (it may reconnect)
SERIAL_FLUSH_IDLE_S = 0.2  # after an oversized message, a pty discards input until quiet this long


class FaultInjector:
    """Decides, per reply, which fault (if any) strikes; seeded for reproducible tests."""

    def __init__(self, seed: int = 0) -> None:
        self.rates: dict[str, float] = {}
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {kind: 0 for kind in FAULT_KINDS}

    def set(self, kind: str, rate: float) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate {rate} not in 0..1")
        self.rates[kind] = rate

    def draw(self) -> str | None:
        with self._lock:
            for kind, rate in self.rates.items():
                if rate and self._random.random() < rate:
                    self.counts[kind] += 1
                    return kind
        return None

    def garble(self, reply: bytes) -> bytes:
        with self._lock:
            if reply.startswith(b"#") and len(reply) > 8:
                return reply[: len(reply) // 2] + b"\n"  # a block cut short
            at = self._random.randrange(max(len(reply) - 1, 1))
        return reply[:at] + b"\xff" + reply[at + 1 :]


def twin_serial(preset: str, seed: int, rows: int, cols: int, overrides: dict[str, float] | None = None) -> str:
    """A twin's serial names what makes it one chip and not another: preset, seed and size,
    and a digest of any changed physics (a record taken on one does not suit the other)."""
    serial = f"TWIN-{preset.upper()}-S{seed}-{rows}X{cols}"
    if overrides:
        text = ",".join(f"{name}={float(value)!r}" for name, value in sorted(overrides.items()))
        serial += "-P" + hashlib.sha256(text.encode()).hexdigest()[:6].upper()
    return serial


@dataclass
class TwinRig:
    """One simulated chip and the three instruments around it."""

    chip: ChipModel
    board: BoardTwin
    smu: SmuTwin
    temperature: TemperatureTwin
    faults: FaultInjector = field(default_factory=FaultInjector)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # wall-clock mode: (real, virtual) time at its start; the virtual clock then never falls behind real time
    wall_origin: tuple[float, float] | None = None

    def follow_wall_clock(self) -> None:
        """Start the wall-clock mode: from now on the chip's clock runs at least as fast as
        real time, so a driver that waits in real time for a set point sees it reached.
        Operations still charge their own time, which may put the chip ahead of the wall."""
        self.wall_origin = (time.monotonic(), self.chip.clock.now())

    def catch_up(self) -> None:
        """Advance the chip to where the wall clock says it must be (nothing in virtual mode)."""
        if self.wall_origin is None:
            return
        real_start, virtual_start = self.wall_origin
        behind = virtual_start + (time.monotonic() - real_start) - self.chip.clock.now()
        if behind > 0:
            self.chip.advance(behind)

    @classmethod
    def build(cls, preset: str = "pcm", seed: int = 0, rows: int | None = None, cols: int | None = None,
              fault_seed: int = 0, overrides: dict[str, float] | None = None) -> TwinRig:
        """``overrides`` change the preset's numbers (``wire_ohm``, ``rtn_fraction``, ...)."""
        chip = ChipModel(preset, seed=seed, rows=rows, cols=cols, overrides=overrides)
        board = BoardTwin(chip, serial=twin_serial(preset, seed, chip.rows, chip.cols, overrides))
        rig = cls(chip, board, SmuTwin(board), TemperatureTwin(chip), FaultInjector(fault_seed))
        board.faults = rig.faults  # SIM:FAULT reaches the injector through the board
        return rig

    @property
    def devices(self) -> dict[str, ScpiDevice]:
        return {"board": self.board, "smu": self.smu, "temperature": self.temperature}


def _respond(rig: TwinRig, session: Session, data: bytes) -> tuple[bytes, str | None]:
    """The reply to ``data`` after fault injection. Raises ``MessageTooLarge`` for a client
    that exceeded the framing limits (the session is then cleared, -223 queued)."""
    with rig.lock:
        try:
            rig.catch_up()
            reply = session.feed(data)
        except MessageTooLarge:
            raise
        except Exception as err:  # noqa: BLE001 - nothing a client writes may stop the server
            session.clear()
            session.device.report_error(-300, f"Device-specific error; {type(err).__name__}"[:200])
            return b"", None
    if not reply:
        return reply, None
    fault = rig.faults.draw()
    if fault == "delay":
        time.sleep(DELAY_S)
    elif fault in ("drop", "disconnect"):
        return b"", fault
    elif fault == "garble":
        return rig.faults.garble(reply), fault
    return reply, fault


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _TcpServer = self.server  # type: ignore[assignment]
        session = Session(server.device)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(server.idle_timeout_s)
        with server.connections_lock:
            server.connections.add(self.request)
        try:
            self._serve(server, session)
        finally:
            with server.connections_lock:
                server.connections.discard(self.request)

    def _serve(self, server: _TcpServer, session: Session) -> None:
        while not server.stopping.is_set():
            try:
                data = self.request.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                reply, fault = _respond(server.rig, session, data)
            except MessageTooLarge as err:
                try:  # say why before hanging up: the client sees it as its reply
                    self.request.sendall(f'-223,"Too much data; {err}; connection closed"\n'.encode())
                    self.request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault == "disconnect":
                self.request.shutdown(socket.SHUT_RDWR)
                return
            if reply:
                try:
                    self.request.sendall(reply)
                except OSError:
                    return


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, rig: TwinRig, device: ScpiDevice, host: str, port: int,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.rig = rig
        self.device = device
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self._accepted = 0  # connections accepted and not yet finished (handler threads)
        super().__init__((host, port), _Handler)

    def verify_request(self, request, client_address) -> bool:
        """Refuse a connection past the cap before a thread is spent on it."""
        with self.connections_lock:
            if self._accepted >= self.max_connections:
                return False
            self._accepted += 1
            return True

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self._accepted -= 1

    def drop_connections(self) -> None:
        with self.connections_lock:
            for connection in list(self.connections):
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class PtyEndpoint:
    """A pty whose slave end (``path``) a client opens like a serial port.

    With ``link``, a symlink at that path always points at the current pty: the stable
    name a client keeps across an ``unplug``/``plug``, like ``/dev/serial/by-id/...``.
    """

    def __init__(self, rig: TwinRig, device: ScpiDevice, link: str | None = None) -> None:
        self.rig = rig
        self.device = device
        self.link = link
        self._plug()

    def _plug(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        if self.link is not None:
            staged = f"{self.link}.new"
            os.symlink(self.path, staged)
            os.replace(staged, self.link)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"pty {self.path}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        session = Session(self.device)
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            try:
                reply, _ = _respond(self.rig, session, data)
            except MessageTooLarge:
                self._flush_until_quiet()  # a serial line cannot hang up: drop what is in flight
                continue
            if reply:
                try:
                    os.write(self._master, reply)
                except OSError:
                    return

    def _flush_until_quiet(self) -> None:
        """Discard input until the line has been quiet for ``SERIAL_FLUSH_IDLE_S``, so the
        rest of an oversized message is not taken for commands."""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], SERIAL_FLUSH_IDLE_S)
            if not ready:
                return
            try:
                os.read(self._master, 65536)
            except OSError:
                return

    def unplug(self) -> None:
        """The adapter is pulled: the pty is gone (its client's next read or write fails)."""
        self.close()
        if self.link is not None:
            try:
                os.unlink(self.link)
            except FileNotFoundError:
                pass

    def plug(self) -> None:
        self._plug()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class RigServer:
    """Serves every device of a rig on TCP (and optionally a pty) until ``close``."""

    def __init__(self, rig: TwinRig, host: str = "127.0.0.1", ports: dict[str, int] | None = None,
                 pty: bool = True, pty_links: str | None = None, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.rig = rig
        self._limits = {"max_connections": max_connections, "idle_timeout_s": idle_timeout_s}
        self.tcp: dict[str, _TcpServer] = {}
        self.ptys: dict[str, PtyEndpoint] = {}
        for name, device in rig.devices.items():
            self.tcp[name] = self._listen(device, host, (ports or {}).get(name, 0))
            if pty:
                link = os.path.join(pty_links, name) if pty_links else None
                self.ptys[name] = PtyEndpoint(rig, device, link)

    def _listen(self, device: ScpiDevice, host: str, port: int) -> _TcpServer:
        server = _TcpServer(self.rig, device, host, port, **self._limits)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return server

    def visa_resource(self, name: str) -> str:
        host, port = self.tcp[name].server_address[:2]
        return f"TCPIP::{host}::{port}::SOCKET"

    def serial_path(self, name: str) -> str:
        """The pty's stable link if the server keeps one, else the pty itself."""
        endpoint = self.ptys[name]
        return endpoint.link or endpoint.path

    def outage(self, seconds: float) -> None:
        """Unplug everything for ``seconds``: connections drop, TCP refuses new ones, ptys
        vanish; then the same addresses come back. The chip keeps its state throughout."""
        addresses = {name: server.server_address[:2] for name, server in self.tcp.items()}
        for server in self.tcp.values():
            self._stop(server)
            server.drop_connections()
        for endpoint in self.ptys.values():
            endpoint.unplug()
        time.sleep(seconds)
        for name, (host, port) in addresses.items():
            self.tcp[name] = self._listen(self.tcp[name].device, host, port)
        for endpoint in self.ptys.values():
            endpoint.plug()

    @staticmethod
    def _stop(server: _TcpServer) -> None:
        server.stopping.set()
        server.shutdown()
        server.server_close()

    def close(self) -> None:
        for server in self.tcp.values():
            self._stop(server)
        for endpoint in self.ptys.values():
            endpoint.unplug()

    def __enter__(self) -> RigServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
