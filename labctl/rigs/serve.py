"""``labctl sim serve``: a twin rig on real transports, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

from labctl.rigs.config import parse_size
from labctl.errors import UsageError


def parse_fault(text: str) -> tuple[str, float]:
    from labctl_sims.server import FAULT_KINDS

    kind, sep, rate = text.partition(":")
    try:
        value = float(rate)
    except ValueError:
        value = -1.0
    if not sep or kind not in FAULT_KINDS or not 0 <= value <= 1:
        raise UsageError(f"--fault {text!r}: expected KIND:RATE with KIND one of {', '.join(FAULT_KINDS)} and RATE in 0..1")
    return kind, value


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is this machine's loopback."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def snippet(chip: str, server) -> str:
    """A ready-to-paste lab.toml table for the served rig (TCP; the pty paths work too)."""
    return "\n".join([
        f"[chips.{chip}]",
        f'board = "{server.visa_resource("board")}"        # or "{server.serial_path("board")}"',
        f'smu = "{server.visa_resource("smu")}"          # or "{server.serial_path("smu")}"',
        f'temperature = "{server.visa_resource("temperature")}"  # or "{server.serial_path("temperature")}"',
        f"window_us = [0.0, {server.rig.chip.params.g_max_us:g}]",
    ])


def parse_settings(texts: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` pairs of ``--set``, as numbers; the names are checked against the preset later."""
    settings: dict[str, float] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        try:
            settings[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--set {text!r}: expected NAME=VALUE with a number, e.g. rtn_fraction=0")
    return settings


def serve_forever(preset: str, seed: int, size: str | None, faults: list[str], host: str, port: int,
                  chip: str, overrides: dict[str, float] | None = None, clock: str = "virtual") -> None:
    from labctl_sims.presets import PRESETS, customised
    from labctl_sims.server import RigServer, TwinRig

    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}: known presets are {', '.join(sorted(PRESETS))}")
    try:
        customised(preset, overrides)
    except ValueError as err:
        raise UsageError(f"--set/--ir-drop: {err}") from None
    rows, cols = parse_size(size) if size else (None, None)
    injected = [parse_fault(text) for text in faults]
    if clock not in ("virtual", "wall"):
        raise UsageError(f"--clock {clock!r}: expected virtual or wall")
    rig = TwinRig.build(preset, seed=seed, rows=rows, cols=cols, overrides=overrides)
    if clock == "wall":
        rig.follow_wall_clock()
    for kind, rate in injected:
        rig.faults.set(kind, rate)
    ports = {"board": port, "smu": port + 1, "temperature": port + 2} if port else None
    try:
        server = RigServer(rig, host=host, ports=ports)
    except OSError as err:
        raise UsageError(f"cannot listen on {host}:{port or 'any'}: {err.strerror or err}") from None
    if not is_loopback(host):
        print(f"labctl: warning: serving on {host}, reachable from other hosts: anyone who can connect "
              "can inject faults (SIM:FAULT) and advance the chip's clock (SIM:CLOCK:ADV); "
              "use --host 127.0.0.1 unless the network is trusted", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    arrays, r, c = rig.chip.shape
    print(f"twin rig: preset {preset}, seed {seed}, {arrays}x{r}x{c}, IR drop {rig.chip.ir_drop_ohm:g} ohm/segment, "
          f"{clock} clock"
          + (f", changed {', '.join(f'{k}={v:g}' for k, v in overrides.items())}" if overrides else "")
          + (f", faults {', '.join(f'{k}:{v:g}' for k, v in injected)}" if injected else ""))
    for name in rig.devices:
        print(f"  {name:<12} {server.visa_resource(name):<36} {server.serial_path(name)}")
    print("\nlab.toml:\n" + snippet(chip, server) + "\n\nCtrl-C stops the rig.", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.close()
        print("twin rig stopped", file=sys.stderr, flush=True)
