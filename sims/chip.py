"""The twin's chip: crossbar state over time, periphery, temperature and the virtual clock.

The model is fully determined by ``(preset, seed, geometry)``: fabrication (cell
parameters, ADC trims, stuck map) and run-time noise come from separate streams of
one seed, so two twins built alike are the same chip, and the same sequence of
commands gives the same replies.

State per cell is what was programmed (``g_prog`` at virtual time ``t_prog``, with its
drift exponent, noise amplitude and relaxation offset); what a read sees at time t is
derived from it, so time can jump by hours at no cost. ``ground_truth()`` is for
tests only; nothing on the wire exposes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl_sims import kernels, physics
from labctl_sims.closed_loop import ClosedLoop, Settled
from labctl_sims.flicker import FlickerState
from labctl_sims.noise import NoisePool
from labctl_sims.periphery import Periphery
from labctl_sims.presets import DeviceParams, customised
from labctl_sims.telegraph import TelegraphNoise
from labctl_sims.thermal import ThermalModel

ROW_READ_TIME_S = 1e-6  # one conversion of one row, all columns at once
PULSE_OVERHEAD_S = 200e-9  # per row, around each pulse
MVM_TIME_S = 2e-6
PULSE_BLOCK_CELLS = 65536
DAC_FULL_CODE = 127


@dataclass(frozen=True)
class GroundTruth:
    """What the chip really is at the moment it is asked; read only by tests."""

    time_s: float
    temperature_k: float
    conductance_us: np.ndarray  # (arrays, rows, cols), as a noiseless read would see it now
    programmed_us: np.ndarray  # right after the last switching pulse (and the read disturb since)
    programmed_at_s: np.ndarray
    nu: np.ndarray
    stuck_low: np.ndarray
    stuck_high: np.ndarray
    adc_gain: np.ndarray  # (arrays, cols): the read path's, now (they drift with time and temperature)
    adc_offset_lsb: np.ndarray  # (arrays, cols)
    mvm_gain: np.ndarray  # (arrays, cols): the MVM path's own, now
    mvm_offset_lsb: np.ndarray  # (arrays, cols)
    programmings: np.ndarray  # programmings in quick succession (RRAM relaxation shrinks with them)
    window_top_us: np.ndarray  # each cell's top of window as wear has left it
    pulses: np.ndarray  # switching pulses each cell has taken


class VirtualClock:
    """Seconds of chip time; advances only by modelled durations and explicit jumps."""

    def __init__(self) -> None:
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self._now += seconds


class ChipModel:
    """Crossbar arrays with per-column ADCs, a thermal model and a virtual clock."""

    def __init__(
        self,
        preset: str = "pcm",
        seed: int = 0,
        rows: int | None = None,
        cols: int | None = None,
        arrays: int | None = None,
        adc_gain_spread: float | None = None,
        adc_offset_spread_lsb: float | None = None,
        ir_drop_ohm: float | None = None,
        overrides: dict[str, float] | None = None,
    ) -> None:
        self.preset = preset
        self.seed = seed
        p: DeviceParams = customised(preset, overrides)
        self.params = p
        default_arrays, default_rows, default_cols = p.geometry
        self.shape = (arrays or default_arrays, rows or default_rows, cols or default_cols)
        if min(self.shape) < 1:
            raise ValueError("geometry must be positive")
        self.ir_drop_ohm = p.wire_ohm if ir_drop_ohm is None else ir_drop_ohm
        if self.ir_drop_ohm < 0:
            raise ValueError("wire resistance cannot be negative")
        # fabrication, run-time noise, and periphery + defects beyond the cells (a stream of
        # their own, so extending them changes no cell of a chip)
        fab_seq, run_seq, aux_seq = np.random.SeedSequence([seed, *self.shape]).spawn(3)
        fab = np.random.default_rng(fab_seq)
        self._rng = np.random.default_rng(run_seq)
        self._fused = kernels.fused()  # chosen once: a twin runs on one path all its life
        self._noise = NoisePool(self._rng, fused=self._fused)
        aux = np.random.default_rng(aux_seq)

        self.cells = physics.draw_cells(p, self.shape, fab)
        usable = (self._fused is not None and kernels.FusedConstants.fit(p)
                  and self._fused.usable(self.cells.set_threshold, self.cells.reset_threshold))
        self._pulse_loops = self._fused if usable else None
        gain_spread = p.adc_gain_spread if adc_gain_spread is None else adc_gain_spread
        offset_spread = p.adc_offset_spread_lsb if adc_offset_spread_lsb is None else adc_offset_spread_lsb
        trims = (1.0 + gain_spread * fab.standard_normal(self.shape[::2]), offset_spread * fab.standard_normal(self.shape[::2]))
        self.periphery = Periphery(p, *(t.astype(np.float32) for t in trims), aux)
        self.adc_bits = p.adc_bits
        self.telegraph = TelegraphNoise(p, ~self.cells.stuck, aux)
        # the closed loop (IMVM) of a board that has one: two square arrays, streams of its own
        self.loop: ClosedLoop | None = None
        if p.closed_loop and self.shape[0] == 2 and self.shape[1] == self.shape[2]:
            loop_fab, loop_run = np.random.SeedSequence([seed, *self.shape, 1]).spawn(2)
            self.loop = ClosedLoop(p, self.shape[1], np.random.default_rng(loop_fab))
            self._loop_rng = np.random.default_rng(loop_run)
        self._programmed_count = 0  # programmings so far: the loop's stability is known until the next
        self._loop_stability: tuple[int, object] | None = None
        self._pulses = np.zeros(self.shape, dtype=np.int32)
        self._window_top = self.cells.g_max.copy()

        self.clock = VirtualClock()
        self.thermal = ThermalModel(p.ambient_k, p.thermal_tau_s)
        self._drift_clock = 0.0  # ∫ Arrhenius acceleration dt: the time drift experiences

        # as fabricated: programmed at time 0, like any later state
        self._g_prog = physics.initial_conductance(p, self.cells, fab)
        self._t_prog = np.zeros(self.shape)
        self._drift_prog = np.zeros(self.shape)
        self._nu = np.zeros(self.shape, dtype=np.float32)
        self._q = np.zeros(self.shape, dtype=np.float32)
        self._activation = np.zeros(self.shape, dtype=np.float32)
        self._relax = np.zeros(self.shape, dtype=np.float32)
        self._relax_slow = np.zeros(self.shape, dtype=np.float32)
        self._programmings = np.zeros(self.shape, dtype=np.int32)  # in quick succession (RRAM relaxation)
        self._scratch: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self._regions: dict[tuple[int, int, int], physics.CellParams] = {}
        self._flicker = FlickerState(self.shape, p.drift_t0_s, self._noise, fused=self._fused)
        self._fused_constants = kernels.FusedConstants.of(p)
        self._shrink_by_count = np.empty(0, dtype=np.float32)  # grown as counts of programmings grow
        everything = (slice(None),)
        self._store_programmed(everything, self._g_prog.copy(), np.ones(self.shape, dtype=bool))

    # ---- geometry --------------------------------------------------------------------

    @property
    def arrays(self) -> int:
        return self.shape[0]

    @property
    def rows(self) -> int:
        return self.shape[1]

    @property
    def cols(self) -> int:
        return self.shape[2]

    @property
    def lsb_ua(self) -> float:
        return self.periphery.lsb_ua

    @property
    def adc_full_scale_ua(self) -> float:
        return self.periphery.full_scale_ua

    @adc_full_scale_ua.setter
    def adc_full_scale_ua(self, value: float) -> None:
        self.periphery.full_scale_ua = value

    # ---- time and temperature ------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Everything that happens over time happens here: clock, temperature, drift clock."""
        self.clock.advance(seconds)
        self._drift_clock += self.thermal.advance(seconds, self._drift_rate)

    def _drift_rate(self, temperature_k: float) -> float:
        return physics.drift_acceleration(temperature_k, self.params)

    @property
    def temperature_k(self) -> float:
        return self.thermal.temperature_k

    def set_temperature(self, kelvin: float) -> None:
        """The temperature controller's set point; the chip follows with a lag."""
        self.thermal.set_target(kelvin)

    def sensor_temperature(self) -> float:
        noise = self._noise.generator().standard_normal()  # after the pool's due refresh: the same stream as ever
        return float(self.thermal.temperature_k + self.params.sensor_noise_k * noise)

    # ---- conductance now -----------------------------------------------------------

    def _work(self, name: str, shape: tuple[int, ...], dtype: type = np.float32,
              fill: float | None = None) -> np.ndarray:
        """A reusable work array (float32 unless told; ``fill``ed once, when it is made): fresh
        256 KiB temporaries on every array read are mapped and unmapped by the allocator, which
        costs more than the arithmetic."""
        key = (name, shape)
        if key not in self._scratch:
            self._scratch[key] = np.empty(shape, dtype=dtype) if fill is None else np.full(shape, fill, dtype=dtype)
        return self._scratch[key]

    def _conductance(self, index: tuple, reuse: bool = False) -> np.ndarray:
        """Noiseless conductance of the indexed cells at the present time and temperature.

        With ``reuse`` the result lives in a work array that the next read overwrites.
        """
        p = self.params
        programmed = self._g_prog[index]
        shape = programmed.shape
        g = self._work("g", shape) if reuse else np.empty(shape, dtype=np.float32)
        factor = self._work("factor", shape) if reuse else np.empty(shape, dtype=np.float32)
        np.copyto(g, programmed)
        if p.drift_scale > 0:
            np.subtract(self._drift_clock, self._drift_prog[index], out=factor, casting="unsafe")
            g *= physics.drift_factor(factor, self._nu[index], p.drift_t0_s, out=factor)
        if p.relaxation_coeff_us:
            np.subtract(self.clock.now(), self._t_prog[index], out=factor, casting="unsafe")
            g += physics.relaxation(self._relax[index], self._relax_slow[index], factor, p)
        if self.thermal.temperature_k != physics.REFERENCE_TEMPERATURE_K:
            g *= physics.conduction_factor(self._activation[index], self.thermal.temperature_k, out=factor)
        return np.maximum(g, 0.0, out=g)

    def _relative_noise(self, index: tuple, g: np.ndarray, window_s: float) -> np.ndarray:
        """The 1/f noise of each indexed cell as a read over ``window_s`` sees it, relative to
        q_s·G (in a work array): the slow components as they stand now plus a fresh draw
        of the fast ones, reduced by the window (see ``sims.flicker``)."""
        self._flicker.advance(self.clock.now())
        noise = self._work("noise", g.shape)
        np.multiply(self._noise.view(g.shape), self._flicker.fresh(window_s), out=noise)
        noise += self._flicker.total[index]
        return noise

    def _read_noise(self, index: tuple, g: np.ndarray, window_s: float) -> np.ndarray:
        """Additive read noise of each indexed cell, µS (in a work array): 1/f noise plus the
        random telegraph noise of the cells that carry a trap."""
        noise = self._relative_noise(index, g, window_s)
        noise *= self._q[index]
        if self.telegraph.cells.size:
            self.telegraph.advance(self.clock.now())
            noise += self.telegraph.level[index]
        noise *= g
        return noise

    # ---- periphery -----------------------------------------------------------------

    def _adc(self, array: int, current_ua: np.ndarray, mvm: bool = False) -> np.ndarray:
        codes = self._work("codes", current_ua.shape)
        return self.periphery.convert(array, current_ua, self.thermal.temperature_k, self.clock.now(), mvm, out=codes)

    def _disturb(self, index: tuple, v_read: float, conversions: int) -> None:
        """Read disturb: every conversion nudges the read cells a little toward the SET rail
        (the read current heats the cell), more steeply with the read voltage."""
        p = self.params
        if not p.read_disturb_per_read:
            return
        fraction = p.read_disturb_per_read * conversions * np.exp((v_read - 0.2) / p.read_disturb_volts_e)
        programmed = self._g_prog[index]
        nudge = (self._window_top[index] - programmed) * np.float32(fraction)
        np.copyto(nudge, 0.0, where=self.cells.stuck[index] | (nudge < 0))
        self._g_prog[index] = programmed + nudge

    def read_codes(self, array: int, rows: slice | np.ndarray, v_read: float, averages: int) -> np.ndarray:
        """ADC codes of the given rows: noisy cell currents through each column's ADC.

        On-board averaging of n conversions (1 µs apart) averages only the 1/f noise
        faster than its window; the board reports the rounded mean, so quantisation and
        saturation apply to the result.
        """
        return self._adc(array, self._row_currents_ua(array, rows, v_read, averages, reuse=True))

    def read_currents_ua(self, array: int, rows: slice | np.ndarray, v_read: float) -> np.ndarray:
        """Cell currents of the given rows as an instrument that measures each line's current
        itself sees them (ArC TWO): the noisy, drifted cells of a read, no column converter."""
        return self._row_currents_ua(array, rows, v_read, 1, reuse=False)

    def _row_currents_ua(self, array: int, rows: slice | np.ndarray, v_read: float, averages: int,
                         reuse: bool) -> np.ndarray:
        index = (array, rows)
        g = self._conductance(index, reuse=reuse)
        g += self._read_noise(index, g, self.params.t_read_s + (averages - 1) * ROW_READ_TIME_S)
        if self.ir_drop_ohm:
            row_numbers = np.arange(self.rows)[rows]
            g *= physics.ir_drop_read_voltages(v_read, g, row_numbers, self.rows, self.ir_drop_ohm)
        else:
            g *= np.float32(v_read)
        self._disturb(index, v_read, averages)
        self.advance(g.shape[0] * ROW_READ_TIME_S * averages)
        return g

    def mvm_codes(self, array: int, dac_codes: np.ndarray, v_read: float, averages: int = 1,
                  gain: int = 1) -> np.ndarray:
        """Column outputs of a matrix-vector multiply, in ADC codes.

        Row i is driven at ``dac_i / 127 · v_read``; each column sums its cells'
        currents (with IR drop when the chip has wire resistance) and the board's MVM
        path divides the sum by the number of rows, so one ADC range serves single-cell
        reads and full-array MVMs; ``gain`` (``MVM:GAIN``) multiplies it back, trading
        range (clipping) for resolution.
        """
        v_rows = dac_codes.astype(np.float32) * np.float32(v_read / DAC_FULL_CODE)
        column_ua = self.column_currents_ua(array, v_rows, averages)
        return self._adc(array, (column_ua * (gain / self.rows)).astype(np.float32), mvm=True)

    def column_currents_ua(self, array: int, v_rows: np.ndarray, averages: int = 1) -> np.ndarray:
        """Each column's summed current with row i driven at ``v_rows[i]`` volts and the
        columns held at 0 V: the analogue multiply before any converter."""
        index = (array, slice(None))
        g = self._conductance(index, reuse=True)
        v_cells = physics.ir_drop_voltages(np.asarray(v_rows, dtype=np.float32), g, self.ir_drop_ohm)
        column_ua = np.einsum("ij,ij->j", v_cells, g, dtype=np.float64)
        column_ua += np.einsum("ij,ij->j", v_cells, self._read_noise(index, g, MVM_TIME_S * averages),
                               dtype=np.float64)
        self.advance(MVM_TIME_S * averages)
        return column_ua

    def solve_codes(self, input_codes: np.ndarray, averages: int = 1) -> tuple[np.ndarray, Settled]:
        """The closed loop (``sims.closed_loop``): input codes of ``b`` in, the settled outputs'
        ADC codes out, the rounded mean of ``averages`` settles (``READ:AVG``, as ``MVM?``
        averages). Each settle sees the arrays as a read would at that moment, read noise
        included, and the clock advances by its settling time and one conversion. An output
        that reached a rail in any of them is reported at that rail."""
        if self.loop is None:
            raise ValueError("this chip has no closed loop")
        window = max(self.loop.p.loop_conversion_s, MVM_TIME_S)
        total = np.zeros(self.loop.n)
        railed = np.zeros(self.loop.n, dtype=bool)
        rail_codes = np.zeros(self.loop.n)
        for _ in range(averages):
            g = [self._conductance((array, slice(None))) for array in (0, 1)]
            if self._loop_stability is None or self._loop_stability[0] != self._programmed_count:
                self._loop_stability = (self._programmed_count, self.loop.stability(g[0], g[1]))
            for array, cells in enumerate(g):
                cells += self._read_noise((array, slice(None)), cells, window)
            settled = self.loop.settle(g[0], g[1], self.loop.input_currents_ua(input_codes), self._loop_rng,
                                       self._loop_stability[1])
            self.advance(settled.settle_s + self.loop.p.loop_conversion_s)
            codes = self.loop.output_codes(settled.volts).astype(np.float64)
            at_rail = np.abs(codes) >= self.loop.full_code
            rail_codes = np.where(at_rail & ~railed, codes, rail_codes)
            railed |= at_rail
            total += codes
        mean = np.where(railed, rail_codes, np.rint(total / averages))
        return mean.astype(np.int16), settled

    def probe_current_ua(self, array: int, row: int, col: int, volts: float, integration_s: float) -> float:
        """Current through one cell routed to the probe port (what the SMU measures).

        The SMU integrates for ``integration_s``, which averages the cell's 1/f noise
        faster than that; the slow part it sees as the ADC does.
        """
        index = (array, slice(row, row + 1), slice(col, col + 1))
        g = self._conductance(index)
        g += self._read_noise(index, g, integration_s)
        self.advance(integration_s)
        return float(volts * g[0, 0])

    # ---- programming ---------------------------------------------------------------

    def program(self, array: int, rows: slice, amplitude_mv: np.ndarray, width_ns: float) -> None:
        """One pulse per addressed cell (0 mV cells are left alone), in blocks of up to 65,536 cells."""
        first, last, _ = rows.indices(self.rows)
        amplitude = self._pulse_amplitudes(amplitude_mv)
        block = max(1, PULSE_BLOCK_CELLS // self.cols)
        for start in range(first, last, block):
            stop = min(start + block, last)
            self._pulse_block((array, slice(start, stop)), amplitude[start - first : stop - first], width_ns)
        self.advance(amplitude.shape[0] * (width_ns * 1e-9 + PULSE_OVERHEAD_S))

    def program_rows(self, array: int, rows: np.ndarray, amplitude_mv: np.ndarray, width_ns: float) -> None:
        """One pulse per addressed cell of the listed rows (``amplitude_mv`` row by row,
        0 mV cells left alone); board time is that of the listed rows only."""
        amplitude = self._pulse_amplitudes(amplitude_mv)
        for k, row in enumerate(rows):
            self._pulse_block((array, slice(int(row), int(row) + 1)), amplitude[k : k + 1], width_ns)
        self.advance(len(rows) * (width_ns * 1e-9 + PULSE_OVERHEAD_S))

    def _pulse_amplitudes(self, amplitude_mv: np.ndarray) -> np.ndarray:
        """The amplitudes as the pulse path takes them: float32 for numpy's, and for the compiled
        loops the board's int16 as it came (they convert each one, exactly as ``astype`` does,
        sparing a 65,536-cell pass and its allocation)."""
        if self._pulse_loops is not None and amplitude_mv.dtype in (np.int16, np.float32):
            return np.ascontiguousarray(amplitude_mv)  # the loops take whole rows, contiguous
        return amplitude_mv.astype(np.float32)

    def _pulse_block(self, index: tuple, amplitude: np.ndarray, width_ns: float) -> None:
        fused = self._pulse_loops
        if fused is not None:
            self._fused_pulse_block(fused, index, amplitude, width_ns)
            return
        cells = self._region(index)
        switched = physics.switches(amplitude, cells)
        if not switched.any():
            return
        g_now = self._conductance(index)
        noise = self._noise.view(g_now.shape)
        g_new = physics.apply_pulses(g_now, amplitude, width_ns, self.params, cells, noise)
        self._pulses[index] += switched
        if self.params.window_loss_per_pulse:
            self._wear(index)
            np.minimum(g_new, self._window_top[index], out=g_new, where=switched)
        self._store_programmed(index, g_new, switched)

    def _region(self, index: tuple[int, slice]) -> physics.CellParams:
        """The cells' parameters for a block of whole rows, kept: the views a pulse block takes
        cost more to make than a small block's loops take to run, and fabrication never changes."""
        array, rows = index
        key = (array, rows.start, rows.stop)
        region = self._regions.get(key)
        if region is None:
            region = self._regions[key] = self.cells.region(index)
        return region

    def _fused_pulse_block(self, fused, index: tuple, amplitude: np.ndarray, width_ns: float) -> None:
        """``_pulse_block`` and ``_store_programmed`` through ``sims.fused``: the same laws, the
        same noise drawn in the same order, a few passes instead of some seventy."""
        p = self.params
        cells = self._region(index)
        shape = amplitude.shape
        saturation = self._work("saturation", shape)
        set_factor, reset_factor = physics.saturation_factors(width_ns, p)
        switched = self._work("switched", shape, bool)
        if not fused.pulse_drives(amplitude, cells.set_threshold, cells.reset_threshold, cells.set_rate,
                                  cells.reset_rate, cells.stuck, set_factor, reset_factor, saturation, switched):
            return
        np.expm1(saturation, out=saturation)
        g_source, drift = self._fused_conductance(fused, index, shape)
        noise = self._noise.view(shape)
        g_new = self._work("g_new", shape)  # consumed within this block: stored, never kept
        log_g = self._work("log_g", shape)
        fused.program_cells(g_source, drift, switched, saturation, noise, amplitude, cells.g_min, cells.g_max,
                            cells.span, cells.inv_span, self._pulses[index], self._window_top[index],
                            *self._fused_constants.pulse, g_new, log_g)
        self._programmed_count += 1
        if p.relaxation_coeff_us:
            self._fused_count_programmings(fused, index, switched)
        np.log(log_g, out=log_g)
        nu_normal = self._noise.view(shape)
        q_argument = self._work("q_argument", shape)
        fused.store_programmed(switched, g_new, log_g, nu_normal, cells.nu_z, cells.stuck, self.clock.now(),
                               self._drift_clock, self._g_prog[index], self._t_prog[index],
                               self._drift_prog[index], self._nu[index], self._activation[index], q_argument,
                               self._fused_constants.store)
        np.exp(q_argument, out=q_argument)
        fused.store_noise_amplitude(switched, q_argument, *self._fused_constants.noise_amplitude, self._q[index])
        self._flicker.restart(index, switched, self.clock.now())
        if p.relaxation_coeff_us:
            self._fused_store_relaxation(fused, index, cells, g_new, switched)

    def _fused_conductance(self, fused, index: tuple, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``_conductance`` as ``program_cells`` takes it: the programmed state and its drift
        factor, made in four passes instead of ten where drift is all there is (at 300 K,
        without relaxation); the relaxed state and the conduction factor (ones at 300 K) where
        relaxation is all there is; elsewhere ``_conductance`` itself, with a factor of ones."""
        p = self.params
        if (p.drift_scale > 0 and not p.relaxation_coeff_us
                and self.thermal.temperature_k == physics.REFERENCE_TEMPERATURE_K):
            factor = self._work("drift", shape)
            fused.drift_log_argument(self._drift_clock, self._drift_prog[index], np.float32(p.drift_t0_s),
                                     np.float32(1.0 / p.drift_t0_s), factor)
            np.log(factor, out=factor)
            fused.drift_exponent(factor, self._nu[index], factor)
            return self._g_prog[index], np.exp(factor, out=factor)
        if p.relaxation_coeff_us and not p.drift_scale > 0:
            return self._fused_relaxed(fused, index, shape), self._thermal_factor(index, shape)
        return self._conductance(index), self._ones(shape)

    def _fused_relaxed(self, fused, index: tuple, shape: tuple[int, ...]) -> np.ndarray:
        """``g_prog + physics.relaxation`` (in a work array) in two loops around numpy's log1p and expm1."""
        taus, denominator, *_ = self._fused_constants.relaxation
        slow_argument = self._work("relax_slow_argument", shape)
        fast_argument = self._work("relax_fast_argument", shape)
        fused.relaxation_arguments(self.clock.now(), self._t_prog[index], taus, slow_argument, fast_argument)
        np.log1p(slow_argument, out=slow_argument)
        np.expm1(fast_argument, out=fast_argument)
        g = self._work("g_relaxed", shape)
        fused.relaxed_conductance(self._g_prog[index], self._relax[index], self._relax_slow[index], slow_argument,
                                  fast_argument, denominator, g)
        return g

    def _thermal_factor(self, index: tuple, shape: tuple[int, ...]) -> np.ndarray:
        """The conduction factor ``_conductance`` multiplies by away from 300 K; ones at 300 K."""
        if self.thermal.temperature_k == physics.REFERENCE_TEMPERATURE_K:
            return self._ones(shape)
        return physics.conduction_factor(self._activation[index], self.thermal.temperature_k,
                                         out=self._work("thermal", shape))

    def _ones(self, shape: tuple[int, ...]) -> np.ndarray:
        """A factor of ones for ``program_cells`` (filled once, never written)."""
        return self._work("ones", shape, fill=1.0)

    def _fused_count_programmings(self, fused, index: tuple, switched: np.ndarray) -> None:
        """``_store_relaxation``'s count of programmings in quick succession, taken before the
        programming time is overwritten; the table of what each count shrinks relaxation by
        grown to cover it."""
        top = fused.count_programmings(switched, self._t_prog[index], self.clock.now(),
                                       self.params.relaxation_memory_s, self._programmings[index])
        if self._shrink_by_count.size <= top:
            self._shrink_by_count = self._fused_constants.shrink_by_count(
                self.params, max(top + 1, 2 * self._shrink_by_count.size))

    def _fused_store_relaxation(self, fused, index: tuple, cells: physics.CellParams, g_new: np.ndarray,
                                switched: np.ndarray) -> None:
        """The rest of ``_store_relaxation`` in one call: the same two draws, taken in the same order."""
        shape = g_new.shape
        fast_normal, slow_normal = self._noise.views(shape, 2)
        _, _, consts, early, late = self._fused_constants.relaxation
        fused.store_relaxation(switched, cells.stuck, g_new, fast_normal, slow_normal, self._programmings[index],
                               self._shrink_by_count, self._work("relax_shrink", shape), consts, early, late,
                               self._relax[index], self._relax_slow[index])

    def _wear(self, index: tuple) -> None:
        """Wear-out: each switching pulse narrows the cell's window from the top, a little."""
        p = self.params
        loss = np.minimum(self._pulses[index] * p.window_loss_per_pulse, p.window_loss_max)
        span = self.cells.span[index]
        self._window_top[index] = self.cells.g_min[index] + span * (1.0 - loss).astype(np.float32)

    def _store_programmed(self, index: tuple, g_new: np.ndarray, where: np.ndarray) -> None:
        """Everything a programming event sets: the state, its time, ν, noise amplitude, relaxation.

        Stuck cells are defects pinned at a rail: they neither drift nor relax.
        """
        self._programmed_count += 1
        p = self.params
        stuck = self.cells.stuck[index]
        recent = self._recent_programmings(index)
        put = _putter(where)
        now = self.clock.now()
        put(self._g_prog[index], g_new)
        put(self._t_prog[index], now)
        put(self._drift_prog[index], self._drift_clock)
        nu_z = physics.nu_rank_after_programming(self.cells.nu_z[index], self._noise.normal(g_new.shape), p)
        nu = physics.drift_exponent(g_new, nu_z, p)
        np.copyto(nu, 0.0, where=stuck)
        put(self._nu[index], nu)
        put(self._q[index], physics.read_noise_q(g_new, p))
        put(self._activation[index], physics.conduction_activation(g_new, p))
        self._flicker.restart(index, where, now)
        if recent is not None:
            self._store_relaxation(index, g_new, where, recent, put)

    def _recent_programmings(self, index: tuple) -> np.ndarray | None:
        """Cells programmed within the relaxation memory before now (read before their time is
        overwritten), or None for a chip that does not relax."""
        if not self.params.relaxation_coeff_us:
            return None
        return (self.clock.now() - self._t_prog[index]) < self.params.relaxation_memory_s

    def _store_relaxation(self, index: tuple, g_new: np.ndarray, where: np.ndarray, recent: np.ndarray,
                          put=None) -> None:
        """RRAM relaxation: programmings in quick succession (write-verify, re-verify rounds)
        leave less of it. ``put``: the caller's ``_putter(where)``, if it has one."""
        p = self.params
        put = put or _putter(where)
        stuck = self.cells.stuck[index]
        put(self._programmings[index], np.where(recent, self._programmings[index] + 1, 1))
        fast, slow = physics.relaxation_sigmas_us(g_new, p)
        shrink = self._programmings[index].astype(np.float32) ** -p.relaxation_iteration_exponent
        fast *= shrink * self._noise.normal(g_new.shape)
        slow *= shrink * self._noise.normal(g_new.shape)
        np.copyto(slow, 0.0, where=stuck)
        put(self._relax_slow[index], slow)
        relax = fast
        np.copyto(relax, 0.0, where=stuck)
        put(self._relax[index], relax)

    # ---- for tests -----------------------------------------------------------------

    def ground_truth(self) -> GroundTruth:
        return GroundTruth(
            time_s=self.clock.now(),
            temperature_k=self.thermal.temperature_k,
            conductance_us=self._conductance((slice(None),)).astype(np.float64),
            programmed_us=self._g_prog.astype(np.float64),
            programmed_at_s=self._t_prog.copy(),
            nu=self._nu.astype(np.float64),
            stuck_low=self.cells.stuck_low.copy(),
            stuck_high=self.cells.stuck_high.copy(),
            adc_gain=self._trims(lambda a, T, t: self.periphery.gain(a, T, t)),
            adc_offset_lsb=self._trims(lambda a, T, t: self.periphery.offset(a, T, t)),
            mvm_gain=self._trims(lambda a, T, t: self.periphery.gain(a, T, t, mvm=True)),
            mvm_offset_lsb=self._trims(lambda a, T, t: self.periphery.offset(a, T, t, mvm=True)),
            programmings=self._programmings.copy(),
            window_top_us=self._window_top.astype(np.float64),
            pulses=self._pulses.copy(),
        )

    def _trims(self, value) -> np.ndarray:
        now, kelvin = self.clock.now(), self.thermal.temperature_k
        return np.stack([value(a, kelvin, now) for a in range(self.arrays)]).astype(np.float64)

    def describe(self) -> dict[str, object]:
        return {"preset": self.preset, "seed": self.seed, "geometry": list(self.shape), **self.params.describe()}


def _putter(where: np.ndarray):
    """Writes values into the cells ``where`` holds (all of them at the cost of a plain copy)."""
    if bool(where.all()):
        def put(target: np.ndarray, values) -> None:
            target[...] = values
    else:
        def put(target: np.ndarray, values) -> None:
            np.copyto(target, values, where=where)
    return put

