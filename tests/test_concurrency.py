"""Per-resource locks: threads and driver objects sharing an instrument never interleave a query and its reply."""

from __future__ import annotations

import threading
import time

from labctl_drivers import InProcessTransport
from labctl_drivers.instrument import ScpiInstrument, resource_lock
from labctl_sims.scpi import ScpiDevice, as_text, expect_count


class Echo(ScpiDevice):
    """Answers ``ECHO? x`` with ``x``."""

    def __init__(self) -> None:
        super().__init__()
        self.command("ECHO?", lambda params: expect_count(params, 1) or as_text(params[0]))


class SlowWire(InProcessTransport):
    """The reply is on the wire a moment before its reader gets to it: room for another to cut in."""

    def write(self, data: bytes) -> None:
        super().write(data)
        time.sleep(0.0003)


def test_eight_threads_on_one_resource_never_interleave():
    transport = SlowWire(Echo().feed, resource="TCPIP::10.0.0.1::5025::SOCKET")
    # two driver objects on the same resource, as a monitor thread and a calibration would hold
    drivers = [ScpiInstrument(transport, "monitor"), ScpiInstrument(transport, "calibration")]
    failures: list[str] = []

    def work(worker: int) -> None:
        driver = drivers[worker % 2]
        for i in range(60):
            tag = f"w{worker}-{i}"
            reply = driver.query(f"ECHO? {tag}")
            if reply != tag:
                failures.append(f"{tag} got {reply}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_lock_is_keyed_by_resource_not_by_object():
    assert resource_lock("ASRL/dev/ttyACM0::INSTR") is resource_lock("ASRL/dev/ttyACM0::INSTR")
    assert resource_lock("ASRL/dev/ttyACM0::INSTR") is not resource_lock("ASRL/dev/ttyACM1::INSTR")
