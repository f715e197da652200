"""Linear systems to solve on the closed loop: the built-in examples and their applications.

* ``random_spd``: a symmetric positive-definite matrix with a chosen condition number
  (eigenvalues log-spaced between 1 and it, random eigenvectors). The loop settles on
  every such matrix and on every block and Schur complement of it.
* ``heat_matrix``: one implicit (backward Euler) step of the 1-D heat equation
  ``u_t = κ·u_xx`` on ``n`` interior points with fixed ends,
  ``(I + r·L)·u_next = u_now`` with ``L = tridiag(−1, 2, −1)`` and ``r = κ·Δt/Δx²``.
  Its condition number is below ``1 + 4r``. This is the kind of differential equation the
  Milano chip's authors solve by recursive block inversion.
* ``kalman_gain_system``: the linear system a Kalman filter solves every step for its gain,
  ``S·Kᵀ = H·P`` with ``S = H·P·Hᵀ + R`` (symmetric positive definite).
"""

from __future__ import annotations

import numpy as np


def random_spd(n: int, condition: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, condition, n)) @ q.T


def random_rhs(n: int, columns: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 1]).standard_normal((n, columns))


def heat_matrix(n: int, r: float) -> np.ndarray:
    laplacian = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    return np.eye(n) + r * laplacian


def heat_initial(n: int) -> np.ndarray:
    """A hot spot and a cooler bump: a profile with both fast and slow modes in it."""
    x = np.linspace(0, 1, n + 2)[1:-1]
    return np.exp(-((x - 0.3) / 0.05) ** 2) + 0.5 * np.sin(np.pi * x)


def example(name: str, n: int, condition: float, columns: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The built-in system ``name``: its matrix and right-hand sides."""
    if name == "random-spd":
        return random_spd(n, condition, seed), random_rhs(n, columns, seed)
    if name == "heat":
        r = (condition - 1) / 4  # condition number below 1 + 4r: at most the one asked for
        return heat_matrix(n, r), np.stack([heat_initial(n)] + [random_rhs(n, 1, seed + k)[:, 0]
                                                                 for k in range(columns - 1)], axis=1)
    raise ValueError(f"unknown example {name!r}: random-spd or heat")


def constant_velocity_model(dt: float, q: float, r: float) -> tuple[np.ndarray, ...]:
    """A 2-D constant-velocity target (state x, y, vx, vy) seen in position: F, H, Q, R."""
    f = np.eye(4)
    f[0, 2] = f[1, 3] = dt
    h = np.zeros((2, 4))
    h[0, 0] = h[1, 1] = 1.0
    g = np.array([[dt ** 2 / 2, 0], [0, dt ** 2 / 2], [dt, 0], [0, dt]])
    return f, h, q * g @ g.T, r * np.eye(2)


def kalman_track(measurements: np.ndarray, dt: float, q: float, r: float, solve) -> np.ndarray:
    """Filtered states of a constant-velocity Kalman filter, its gain from ``solve(S, H·P)``
    (``S·Kᵀ = H·P``): ``numpy.linalg.solve`` for the digital filter, the closed loop for the chip's."""
    f, h, q_matrix, r_matrix = constant_velocity_model(dt, q, r)
    x = np.array([*measurements[0], 0.0, 0.0])
    p = np.diag([r, r, 10.0, 10.0])
    states = []
    for z in measurements:
        x, p = f @ x, f @ p @ f.T + q_matrix
        s = h @ p @ h.T + r_matrix
        gain = solve(s, h @ p).T
        x = x + gain @ (z - h @ x)
        p = (np.eye(4) - gain @ h) @ p
        states.append(x.copy())
    return np.array(states)
