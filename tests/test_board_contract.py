"""The board contract (``labctl_drivers.contract``) on every board labctl ships a driver for:
the SCPI board over an in-process link and over TCP to a served twin, and the ArC TWO driver
on its stand-in (pyarc2's real signatures over the twin's chip model)."""

from __future__ import annotations

import pytest

from labctl_drivers.board import Board
from labctl_drivers.contract import BoardContract
from labctl_drivers.safety import SafeOperatingArea
from labctl_drivers.testing import CountingTransport
from labctl_drivers.transport import InProcessTransport, VisaTransport
from labctl_sims.server import RigServer, TwinRig


class TestScpiBoardInProcess(BoardContract):
    @pytest.fixture
    def rig(self):
        return TwinRig.build("pcm", seed=5, rows=16, cols=16)

    @pytest.fixture
    def counting(self, rig):
        return CountingTransport(InProcessTransport(rig.devices["board"].feed, "twin://contract/board"))

    @pytest.fixture
    def board(self, counting):
        board = Board(counting, soa=SafeOperatingArea())
        yield board
        board.close()

    @pytest.fixture
    def instrument_calls(self, counting):
        return lambda: counting.round_trips

    @pytest.fixture
    def at_rest(self, rig):
        return lambda: rig.devices["board"].probe is None


class TestScpiBoardOverTcp(TestScpiBoardInProcess):
    @pytest.fixture
    def counting(self, rig):
        with RigServer(rig, pty=False) as server:
            yield CountingTransport(VisaTransport(server.visa_resource("board"), timeout_s=5.0))


class TestArc2OnItsStandIn(BoardContract):
    set_pulse_mv, reset_pulse_mv = 1800, -2400

    @pytest.fixture
    def board(self):
        pytest.importorskip("pyarc2", reason="the stand-in takes its signatures from pyarc2: pip install pyarc2")
        from labctl.rigs.standins import open_arc2_twin

        board = open_arc2_twin(resource=None, options={"preset": "rram", "seed": 2}, soa=SafeOperatingArea(),
                               timeout_s=2.0)
        yield board
        board.close()

    @pytest.fixture
    def instrument_calls(self, board):
        return lambda: board.instrument.calls

    def put_to_work(self, board) -> None:
        board.instrument.config_channels([(0, 0.15), (16, 0.0)], None)
        board.instrument.execute()

    @pytest.fixture
    def at_rest(self, board):
        return board.standin.at_rest
