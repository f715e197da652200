"""Device presets: the population statistics a simulated chip is drawn from.

Every number here is a model parameter a device researcher may want to check or
change; ``labctl sim describe --preset P`` prints them, and ``sims/README.md`` gives
the equations they enter and where the reference values come from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# IBM aihwkit PCMLikeNoiseModel (Nandakumar et al., ICECS 2019), fitted on 1M PCM devices
AIHWKIT_PROG_COEFF_US = (0.26348, 1.9650, -1.1731)  # σ_prog(g) = c0 + c1·g + c2·g², g = G/Gmax, at Gmax 25 µS
AIHWKIT_PROG_G_MAX_US = 25.0
AIHWKIT_READ_NOISE = (0.0088, 0.65, 0.2)  # q_s = min(a / g^b, cap)
AIHWKIT_NU_MEAN = (-0.0155, 0.0244, 0.049, 0.1)  # μ_ν = clip(a·ln g + b, lo, hi)
AIHWKIT_NU_STD = (-0.0125, -0.0059, 0.008, 0.045)  # σ_ν = clip(a·ln g + b, lo, hi)
AIHWKIT_T0_S = 20.0
# IBM aihwkit ReRamWan2022NoiseModel (Wan et al., Nature 2022, NeuRRAM): spread of G about its target
# after write-verify, σ(g) = Σ c_i·g^i µS at Gmax 40 µS, measured 1 s and 1 day after programming
WAN2022_SIGMA_1S_US = (0.348, 16.030, -43.853, 45.393, -16.815)
WAN2022_SIGMA_1D_US = (0.701, 22.086, -50.773, 47.095, -16.458)
WAN2022_G_MAX_US = 40.0
AIHWKIT_T_READ_S = 250e-9
# IBM aihwkit IOParameters.ir_drop_g_ratio default: wire conductance per cell segment over the device's
# largest conductance, 1 / (0.35 Ω · 5 µS); the twin keeps the ratio, so a segment is 1 / (ratio · Gmax)
AIHWKIT_IR_DROP_G_RATIO = 1.0 / (0.35 * 5e-6)


def aihwkit_wire_ohm(g_max_us: float) -> float:
    return 1.0 / (AIHWKIT_IR_DROP_G_RATIO * g_max_us * 1e-6)


@dataclass(frozen=True)
class DeviceParams:
    name: str
    description: str
    geometry: tuple[int, int, int]  # default (arrays, rows, cols)

    # conductance window
    g_max_us: float
    g_min_us: float
    g_max_spread: float  # relative σ of each cell's top of window (device-to-device)

    # pulse response (threshold switching, soft bounds)
    set_threshold_mv: float
    set_threshold_spread_mv: float
    set_scale_mv: float
    set_strength_us: float  # median step of an empty cell at one scale above threshold, 100 ns
    reset_threshold_mv: float
    reset_threshold_spread_mv: float
    reset_scale_mv: float
    reset_strength_us: float
    reset_melt_mv: float  # a RESET at least this strong amorphises the whole cell (inf: never)
    strength_spread: float  # lognormal σ of per-cell strengths
    width_exponent: float  # step ∝ (width / 100 ns) ** exponent

    # cycle-to-cycle programming noise: aihwkit's σ_prog(G), spread over the steps of a path
    prog_noise_scale: float
    reset_noise_factor: float  # RESET steps are noisier than SET steps by this factor
    prog_floor: float  # every switching pulse carries at least prog_floor · σ_prog(G)

    # read noise: aihwkit's 1/f law, growing with time since programming
    read_noise_scale: float
    t_read_s: float

    # drift: G(t) = G_prog · ((t_eff + t0) / t0) ** (-ν), ν from aihwkit's state-dependent law
    drift_scale: float  # multiplies ν (0: no drift)
    nu_cycle_correlation: float  # correlation of a cell's ν rank between programmings
    drift_t0_s: float
    drift_activation_ev: float  # Arrhenius acceleration of the drift clock

    # conduction: G_read(T) = G · exp(-Ea/k · (1/T - 1/T_ref)), Ea from empty to full cell
    conduction_activation_ev: tuple[float, float]

    # relaxation after programming (RRAM), two parts, each r ~ N(0, σ² · k^-2e), k = programmings within
    # relaxation_memory_s: fast  a · (1 - exp(-t/τ_fast)),             σ_a = fast_scale · σ_prog(g)
    #                      slow  b · sqrt(ln(1 + t/τ) / ln(1 + T_ref/τ)), σ_b = slow_scale · sqrt(σ_Tref² - σ_prog²)
    relaxation_coeff_us: tuple[float, ...]  # σ_Tref(g) polynomial (empty: no relaxation)
    relaxation_reference_s: float  # T_ref, when σ_Tref was measured
    relaxation_tau_s: float
    relaxation_fast_tau_s: float
    relaxation_fast_scale: tuple[float, float]  # σ_a = (s0 + s1·g) · σ_prog(g): fitted, see sims/README.md
    relaxation_slow_scale: float
    relaxation_iteration_exponent: float  # each part's σ falls as k ** -exponent
    relaxation_memory_s: float

    # defects
    stuck_low_rate: float
    stuck_high_rate: float
    initial_g_us: tuple[float, float]  # as-fabricated range

    # periphery
    adc_bits: int
    adc_full_scale_ua: float
    adc_gain_spread: float
    adc_offset_spread_lsb: float

    # thermal
    ambient_k: float
    thermal_tau_s: float
    sensor_noise_k: float

    # periphery beyond the trims (sims/periphery.py); 0 turns each part off
    wire_ohm: float = 0.0  # IR drop: resistance of each row and column wire segment (presets: aihwkit's ratio)
    adc_inl_lsb: float = 1.0  # peak integral non-linearity of each column's ADC
    adc_gain_tempco_per_k: float = 50e-6  # mean relative gain change per kelvin, ...
    adc_gain_tempco_spread: float = 20e-6  # ... and its column-to-column spread
    adc_offset_tempco_lsb_per_k: float = 0.02  # σ over columns of the offset's change per kelvin
    adc_gain_wander: float = 5e-4  # σ of each column's slow gain wander (relative) ...
    adc_offset_wander_lsb: float = 0.5  # ... and offset wander (codes), ...
    adc_wander_tau_s: float = 4 * 3600.0  # ... over this time constant
    mvm_gain_mismatch: float = 0.003  # the MVM path's gain differs from the read path's by this σ ...
    mvm_offset_mismatch_lsb: float = 1.0  # ... and its offset by this σ, in codes

    # wear, disturb and random telegraph noise (0 turns each off)
    window_loss_per_pulse: float = 1e-7  # each switching pulse narrows the cell's window by this fraction
    window_loss_max: float = 0.5
    read_disturb_per_read: float = 2e-9  # a conversion at 0.2 V moves G this fraction of the way to Gmax ...
    read_disturb_volts_e: float = 0.03  # ... e-fold per this many volts more
    rtn_fraction: float = 0.01  # cells with one two-level trap
    rtn_amplitude: float = 0.01  # median ΔG/G of a trap
    rtn_tau_range_s: tuple[float, float] = (1e-3, 100.0)  # mean dwell times, log-uniform

    # closed loop (boards listing IMVM: sims/closed_loop.py); only the sram-64 preset has one
    closed_loop: bool = False
    loop_open_loop_gain: float = 1.0e4  # each op-amp's DC gain (80 dB) ...
    loop_open_loop_gain_spread: float = 0.3  # ... lognormal σ over op-amps
    loop_gbw_hz: float = 20.0e6  # unity-gain bandwidth: the loop's time scale
    loop_offset_mv: float = 2.0  # σ of each op-amp's input offset
    loop_output_noise_mv: float = 0.25  # RMS noise on each settled output, integrated over the ADC's sampling
    loop_vmax_v: float = 0.5  # output rails / ADC full scale
    loop_imax_ua: float = 5.0  # input DAC full scale (code ±127)
    loop_input_gain_spread: float = 0.003  # σ of each row's input DAC gain
    loop_output_gain_spread: float = 0.003  # σ of each column's output ADC gain
    loop_output_offset_lsb: float = 1.0  # σ of each output ADC's offset, codes
    loop_conversion_s: float = 1.0e-6  # the output ADC's conversion after the loop has settled
    loop_timeout_s: float = 1.0e-3  # a loop not settled by then is read at its rails

    prog_coeff_us: tuple[float, ...] = AIHWKIT_PROG_COEFF_US  # σ_prog(g) = Σ c_i·g^i µS at prog_coeff_g_max_us
    prog_coeff_g_max_us: float = AIHWKIT_PROG_G_MAX_US
    read_noise_law: tuple[float, float, float] = AIHWKIT_READ_NOISE
    nu_mean_law: tuple[float, float, float, float] = AIHWKIT_NU_MEAN
    nu_std_law: tuple[float, float, float, float] = AIHWKIT_NU_STD

    def describe(self) -> dict[str, Any]:
        return asdict(self)


PCM = DeviceParams(
    name="pcm",
    description="Phase-change memory, 0-25 µS; IBM aihwkit's PCM statistics (programming noise, "
    "1/f read noise, state-dependent power-law drift).",
    geometry=(1, 256, 256),
    g_max_us=25.0,
    g_min_us=0.1,
    g_max_spread=0.04,
    set_threshold_mv=800.0,
    set_threshold_spread_mv=60.0,
    set_scale_mv=1000.0,
    set_strength_us=8.0,
    reset_threshold_mv=1200.0,
    reset_threshold_spread_mv=80.0,
    reset_scale_mv=1000.0,
    reset_strength_us=14.0,
    reset_melt_mv=3600.0,
    strength_spread=0.25,
    width_exponent=0.5,
    prog_noise_scale=1.0,
    reset_noise_factor=1.3,
    prog_floor=0.6,
    read_noise_scale=1.0,
    t_read_s=AIHWKIT_T_READ_S,
    drift_scale=1.0,
    nu_cycle_correlation=0.7,
    drift_t0_s=AIHWKIT_T0_S,
    drift_activation_ev=0.3,
    conduction_activation_ev=(0.2, 0.02),
    relaxation_coeff_us=(),
    relaxation_reference_s=86400.0,
    relaxation_tau_s=1.0,
    relaxation_fast_tau_s=0.5,
    relaxation_fast_scale=(1.0, 0.0),
    relaxation_slow_scale=1.0,
    relaxation_iteration_exponent=0.0,
    relaxation_memory_s=3600.0,
    stuck_low_rate=0.003,
    stuck_high_rate=0.002,
    initial_g_us=(0.3, 3.0),
    adc_bits=12,
    adc_full_scale_ua=8.0,
    adc_gain_spread=0.005,
    adc_offset_spread_lsb=2.0,
    wire_ohm=aihwkit_wire_ohm(25.0),
    ambient_k=300.0,
    thermal_tau_s=60.0,
    sensor_noise_k=0.05,
)

RRAM = replace(
    PCM,
    name="rram",
    description="Resistive RAM (filamentary), 0-40 µS, after Wan et al., Nature 2022 (NeuRRAM) as aihwkit's "
    "ReRamWan2022NoiseModel gives it: programming spread peaking near g = 0.3, relaxation that widens it "
    "over a day and shrinks with re-programming, about 1 % read noise, no drift; bidirectional gradual switching.",
    g_max_us=WAN2022_G_MAX_US,
    g_min_us=1.0,
    g_max_spread=0.06,
    set_threshold_mv=900.0,
    set_threshold_spread_mv=80.0,
    set_scale_mv=800.0,
    set_strength_us=14.0,
    reset_threshold_mv=1000.0,
    reset_threshold_spread_mv=90.0,
    reset_scale_mv=800.0,
    reset_strength_us=14.0,
    reset_melt_mv=float("inf"),
    strength_spread=0.35,
    prog_coeff_us=WAN2022_SIGMA_1S_US,
    prog_coeff_g_max_us=WAN2022_G_MAX_US,
    prog_noise_scale=1.0,
    reset_noise_factor=1.0,
    prog_floor=0.3,
    read_noise_law=(0.0024, 0.0, 1.0),  # q_s flat in G: 1 % for one read at t0 (aihwkit's note on Wan 2022)
    drift_scale=0.0,
    conduction_activation_ev=(0.05, 0.01),
    relaxation_coeff_us=WAN2022_SIGMA_1D_US,
    relaxation_fast_scale=(3.5, -1.75),  # fitted with the iteration exponent through the reference verify
    relaxation_slow_scale=2.15,
    relaxation_iteration_exponent=0.25,  # Wan 2022: relaxation shrinks as a cell is re-programmed
    stuck_low_rate=0.005,
    stuck_high_rate=0.005,
    initial_g_us=(1.0, 5.0),
    adc_full_scale_ua=16.0,
    wire_ohm=aihwkit_wire_ohm(WAN2022_G_MAX_US),
    rtn_fraction=0.05,  # RTN is common in filamentary RRAM (a trap near the filament's constriction)
    rtn_amplitude=0.02,
)

SRAM_64 = replace(
    PCM,
    name="sram-64",
    description="Two 64x64 arrays with tight spread and negligible drift, like the Politecnico di "
    "Milano closed-loop in-memory-computing chip.",
    geometry=(2, 64, 64),
    g_max_spread=0.01,
    set_threshold_spread_mv=15.0,
    reset_threshold_spread_mv=15.0,
    reset_threshold_mv=1000.0,
    reset_strength_us=8.0,
    reset_melt_mv=float("inf"),
    strength_spread=0.05,
    prog_noise_scale=0.3,
    reset_noise_factor=1.0,
    read_noise_scale=0.3,
    drift_scale=0.05,
    conduction_activation_ev=(0.01, 0.01),
    stuck_low_rate=0.0005,
    stuck_high_rate=0.0005,
    adc_gain_spread=0.002,
    adc_offset_spread_lsb=1.0,
    window_loss_per_pulse=0.0,  # SRAM cells do not wear with writes
    read_disturb_per_read=0.0,
    rtn_fraction=0.0,
    closed_loop=True,
)

PRESETS: dict[str, DeviceParams] = {p.name: p for p in (PCM, RRAM, SRAM_64)}


def customised(preset: str, overrides: dict[str, float] | None = None) -> DeviceParams:
    """A preset with some of its numbers changed (``labctl sim serve --set``, lab.toml's
    ``twin.params``): every mechanism can be switched off or scaled without a new preset.
    Only numeric parameters may change; a wrong name or value is a ``ValueError`` naming it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    base = PRESETS[preset]
    if not overrides:
        return base
    numeric = {name for name, value in asdict(base).items()
               if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "adc_bits"}
    changes: dict[str, float] = {}
    for name, value in overrides.items():
        if name not in numeric:
            raise ValueError(f"unknown twin parameter {name!r}; numeric parameters: {', '.join(sorted(numeric))}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"twin parameter {name}={value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")) and name != "reset_melt_mv":
            raise ValueError(f"twin parameter {name}={value!r} must be finite")
        if number < 0 and not name.endswith(("_mv", "_law")):
            raise ValueError(f"twin parameter {name}={value!r} cannot be negative")
        changes[name] = number
    return replace(base, **changes)
