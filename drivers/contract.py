"""The contract every board driver keeps, as pytest tests a driver runs against itself.

A driver's test module subclasses :class:`BoardContract` and provides three fixtures::

    from labctl_drivers.contract import BoardContract

    class TestMyBoard(BoardContract):
        set_pulse_mv, reset_pulse_mv = 1800, -2500   # pulses that move this chip's cells

        @pytest.fixture
        def board(self):                    # a ChipBoard on a chip whose cells may be programmed
            board = open_my_board(...)
            yield board
            board.close()

        @pytest.fixture
        def instrument_calls(self, board):  # how many operations have reached the instrument
            return lambda: my_counter

        @pytest.fixture
        def at_rest(self, board):           # whether the instrument is in its safe idle state
            return lambda: ...

pytest collects the inherited tests (identity, geometry, read and program round trips,
limits refused before the instrument, capabilities honoured, safe state on exit). labctl
runs the same class on its SCPI board (in process and over TCP) and on the ArC TWO driver.
"""

from __future__ import annotations

import numpy as np
import pytest

from labctl_drivers.errors import LimitError
from labctl_drivers.interface import CAPABILITIES, ChipBoard, missing_members


class BoardContract:
    """Inherit, give ``board``, ``instrument_calls`` and ``at_rest`` fixtures, and run pytest."""

    set_pulse_mv = 1800  # a SET pulse that moves a cell of this chip up
    reset_pulse_mv = -2500  # a RESET pulse that moves it down
    pulse_width_ns = 100
    reads_for_noise = 8

    # ---- what the board is -----------------------------------------------------------

    def test_implements_the_interface(self, board):
        assert missing_members(board) == []
        assert isinstance(board, ChipBoard)

    def test_identity_has_its_four_fields(self, board):
        identity = board.identity()
        assert all(str(part).strip() for part in (identity.maker, identity.model, identity.serial, identity.firmware))
        assert board.identify()

    def test_geometry_converter_and_limits_are_sane(self, board):
        g = board.geometry()
        assert min(g.arrays, g.rows, g.cols) >= 1
        adc = board.adc()
        assert 1 <= adc.bits <= 16 and adc.full_scale_ua > 0
        limits = board.pulse_limits()
        assert limits.set_max_mv > 0 and limits.reset_max_mv > 0 and limits.width_max_ns > 0
        assert board.capabilities() <= CAPABILITIES, "capabilities outside the names PROTOCOL.md defines"

    def test_clock_moves_forward_when_time_is_let_pass(self, board):
        before, _ = board.clock_and_temperature()
        board.let_time_pass(0.01)
        assert board.clock_s() >= before + 0.01 * 0.99

    # ---- reading -------------------------------------------------------------------------

    def test_reads_have_the_array_shape_and_the_converter_range(self, board):
        g, full = board.geometry(), 2 ** (board.adc().bits - 1)
        array = board.read_array()
        assert array.shape == (g.rows, g.cols) and np.issubdtype(array.dtype, np.integer)
        assert np.abs(array).max() <= full
        assert board.read_row(g.rows - 1).shape == (g.cols,)
        assert isinstance(board.read_cell(0, g.cols - 1), (int, np.integer))

    def test_listed_rows_come_back_in_the_order_listed(self, board):
        if "LIST" not in board.capabilities():
            pytest.skip("the board does not list LIST")
        g = board.geometry()
        rows = np.array([g.rows - 1, 0])
        listed = board.read_rows(rows)
        assert listed.shape == (2, g.cols)
        board.averaging = 64
        one_by_one = np.stack([board.read_row(int(row)) for row in rows])
        again = board.read_rows(rows)
        assert np.abs(np.median(again - one_by_one, axis=1)).max() < np.abs(one_by_one).max() * 0.5 + 2

    # ---- programming ---------------------------------------------------------------------

    def _mean_code(self, board, row: int, col: int) -> float:
        return float(np.mean([board.read_cell(row, col) for _ in range(self.reads_for_noise)]))

    def test_a_set_pulse_raises_a_cell_and_a_reset_lowers_it(self, board):
        g = board.geometry()
        board.set_pulse_width(self.pulse_width_ns)
        row, col = g.rows // 2, g.cols // 2
        for _ in range(3):
            board.program_cell(row, col, self.reset_pulse_mv)
        low = self._mean_code(board, row, col)
        for _ in range(3):
            board.program_cell(row, col, self.set_pulse_mv)
        high = self._mean_code(board, row, col)
        amplitudes = np.zeros(g.cols, dtype=np.int16)
        amplitudes[col] = self.reset_pulse_mv
        for _ in range(3):
            board.program_row(row, amplitudes)
        low_again = self._mean_code(board, row, col)
        assert high > low + 3 and high > low_again + 3, (low, high, low_again)

    def test_array_and_listed_programming_reach_only_the_addressed_cells(self, board):
        g = board.geometry()
        board.set_pulse_width(self.pulse_width_ns)
        board.averaging = 16
        board.program_array(np.full(g.shape, self.reset_pulse_mv, dtype=np.int16))
        before = board.read_array().astype(float)
        amplitudes = np.zeros(g.shape, dtype=np.int16)
        amplitudes[0, 0] = self.set_pulse_mv
        for _ in range(3):
            board.program_array(amplitudes)
        if "LIST" in board.capabilities():
            for _ in range(3):
                board.program_list(np.array([g.rows - 1]), np.array([g.cols - 1]), np.array([self.set_pulse_mv]))
        after = board.read_array().astype(float)
        moved = after - before
        assert moved[0, 0] > 3
        untouched = np.ones(g.shape, dtype=bool)
        untouched[0, 0] = untouched[-1, -1] = False
        assert np.median(np.abs(moved[untouched])) < moved[0, 0] / 2
        if "LIST" in board.capabilities():
            assert moved[-1, -1] > 3

    # ---- refused before the instrument ---------------------------------------------------

    def test_unsafe_requests_never_reach_the_instrument(self, board, instrument_calls):
        g, limits = board.geometry(), board.pulse_limits()
        before = instrument_calls()
        refused = [
            lambda: board.program_cell(0, 0, limits.set_max_mv + 1),
            lambda: board.program_cell(0, 0, -limits.reset_max_mv - 1),
            lambda: board.program_array(np.zeros((g.rows + 1, g.cols), dtype=np.int16)),
            lambda: board.program_row(0, np.full(g.cols, 0.5)),
            lambda: board.program_cell(g.rows, 0, 100),
            lambda: board.read_cell(0, g.cols),
            lambda: board.set_pulse_width(limits.width_max_ns + 1),
            lambda: setattr(board, "read_voltage", 5.0),
            lambda: board.mvm(np.full(g.rows, 128)),
        ]
        for request in refused:
            with pytest.raises(LimitError):
                request()
        assert instrument_calls() == before, "a refused request reached the instrument"

    def test_capabilities_not_listed_are_refused_and_listed_ones_work(self, board, instrument_calls):
        g, listed = board.geometry(), board.capabilities()
        uses = {
            "MVM": lambda: board.mvm(np.zeros(g.rows, dtype=np.int16)),
            "LIST": lambda: board.read_rows(np.array([0])),
            "PROBE": lambda: board.route_probe(0, 0),
            "IMVM": lambda: board.solve_ranges(),
        }
        for capability, use in uses.items():
            if capability in listed:
                use()
                continue
            before = instrument_calls()
            with pytest.raises(LimitError):
                use()
            assert instrument_calls() == before, f"{capability} reached the instrument although not listed"
        if "MVM" in listed:
            assert board.mvm(np.full(g.rows, 64, dtype=np.int16)).shape == (g.cols,)
        if "PROBE" in listed:
            board.route_probe(None)

    # ---- leaving -------------------------------------------------------------------------

    def put_to_work(self, board) -> None:
        """Leave the instrument busy (a probe routed, lines driven): a driver's test may
        override this with what its instrument can be left doing."""
        if "PROBE" in board.capabilities():
            board.route_probe(0, 0)

    def test_safe_state_on_exit(self, board, at_rest):
        self.put_to_work(board)
        if not at_rest():  # the check must be able to fail: it sees a busy instrument as busy
            board.make_safe()
            assert at_rest()
        else:
            pytest.fail("at_rest() says the instrument rests while it was put to work: it cannot tell")
