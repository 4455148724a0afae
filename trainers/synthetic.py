"""A synthetic stand-in for UCI HAR, so studies and tests run without the real download.

The generator mimics the physics that make HAR hard rather than drawing arbitrary class
templates: gait is periodic at activity-specific step frequencies with harmonics and a
stride-rate asymmetry, static postures differ mainly in the gravity direction seen by
``total_acc`` (sitting and standing deliberately close), and every subject has their own
amplitude, cadence and sensor-mounting tilt. Train and test come from disjoint subjects, as
in UCI HAR, so a model has to generalise across people. Everything is vectorised numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HAR_CLASSES: tuple[str, ...] = (
    "walking",
    "walking_upstairs",
    "walking_downstairs",
    "sitting",
    "standing",
    "laying",
)
"""Class names in label order (UCI HAR labels 1..6 map to 0..5)."""

HAR_CHANNELS: tuple[str, ...] = (
    "body_acc_x",
    "body_acc_y",
    "body_acc_z",
    "body_gyro_x",
    "body_gyro_y",
    "body_gyro_z",
    "total_acc_x",
    "total_acc_y",
    "total_acc_z",
)
"""The nine inertial channels, in the order UCI HAR's ``Inertial Signals`` are stacked."""

SAMPLING_RATE_HZ = 50.0

FloatArray = npt.NDArray[np.float64]

_N_CLASSES = len(HAR_CLASSES)
_DYNAMIC = np.array([True, True, True, False, False, False])

# Step frequency (Hz) per class; static classes get a slow postural sway instead.
_STEP_HZ = np.array([1.9, 1.6, 2.15, 0.3, 0.45, 0.25])
# Overall body-acceleration amplitude (g) per class.
_ACC_AMP = np.array([0.30, 0.24, 0.42, 0.006, 0.012, 0.004])
# Gyro amplitude (rad/s) per class.
_GYRO_AMP = np.array([0.45, 0.38, 0.55, 0.01, 0.02, 0.008])
# Posture: pitch (toward z) and roll (toward y) of gravity in the sensor frame, degrees.
# Sitting vs standing differ by only ~11 degrees, less than two subject-level std devs.
_PITCH_DEG = np.array([10.0, 14.0, 6.0, 20.0, 9.0, 78.0])
_ROLL_DEG = np.array([0.0, 1.0, -1.0, 3.0, 0.0, 25.0])

# Harmonic structure: frequency of each (axis, harmonic) in half-steps, i.e. as a multiple
# of the stride rate. The lateral axis (y) sways at stride rate, half the step rate, as in
# real gait; the other axes move at the step rate and its harmonics.
_HALF_STEPS = np.array([[2, 4, 6], [1, 3, 5], [2, 4, 6]])
# Relative amplitude per (class, axis, harmonic); stairs add stronger higher harmonics
# (impacts) and stride-rate asymmetry.
_ACC_HARM = np.array(
    [
        [[1.00, 0.35, 0.10], [0.45, 0.10, 0.05], [0.55, 0.30, 0.08]],  # walking
        [[0.80, 0.50, 0.15], [0.55, 0.20, 0.08], [0.70, 0.45, 0.15]],  # upstairs
        [[1.00, 0.60, 0.35], [0.50, 0.25, 0.12], [0.45, 0.40, 0.25]],  # downstairs
        [[1.00, 0.05, 0.00], [0.60, 0.05, 0.00], [0.60, 0.05, 0.00]],  # sitting
        [[1.00, 0.10, 0.00], [0.80, 0.10, 0.00], [0.80, 0.10, 0.00]],  # standing
        [[1.00, 0.05, 0.00], [0.50, 0.05, 0.00], [0.50, 0.05, 0.00]],  # laying
    ]
)
_GYRO_HARM = np.array(
    [
        [[0.40, 0.15, 0.05], [0.60, 0.20, 0.05], [1.00, 0.25, 0.08]],
        [[0.50, 0.20, 0.08], [0.80, 0.30, 0.10], [0.90, 0.35, 0.12]],
        [[0.45, 0.25, 0.12], [0.70, 0.30, 0.15], [1.00, 0.45, 0.20]],
        [[0.50, 0.00, 0.00], [0.50, 0.00, 0.00], [0.50, 0.00, 0.00]],
        [[0.60, 0.05, 0.00], [0.60, 0.05, 0.00], [0.60, 0.05, 0.00]],
        [[0.50, 0.00, 0.00], [0.50, 0.00, 0.00], [0.50, 0.00, 0.00]],
    ]
)
# Fixed phase offset per (axis, harmonic), shared by classes so phase alone is no cue.
_PHASE_OFFSET = np.array([[0.0, 0.7, 1.9], [1.3, 2.1, 0.4], [2.5, 0.2, 1.1]])
# Class-specific extra phase of the second harmonic: the shape (skew) of each step.
_SKEW = np.array([0.0, 0.9, -0.8, 0.0, 0.0, 0.0])

# Noise scale per modality, multiplied by ``noise``: g for acceleration, rad/s for gyro.
_ACC_NOISE_SCALE = 0.25
_GYRO_NOISE_SCALE = 0.4


@dataclass(frozen=True)
class SyntheticHAR:
    """Generated windows plus the subject of each window (for leakage checks)."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    subjects_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]
    subjects_test: npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Subjects:
    """Per-subject traits: people differ in vigour, cadence, posture and sensor mounting."""

    amp: FloatArray  # (S,) amplitude scale
    freq: FloatArray  # (S,) cadence scale
    pitch: FloatArray  # (S,) posture offset, degrees
    rotation: FloatArray  # (S, 3, 3) sensor-mounting tilt


def make_synthetic_har(
    n_train: int = 7352,
    n_test: int = 2947,
    length: int = 128,
    n_subjects: int = 30,
    noise: float = 0.2,
    seed: int = 0,
) -> tuple[
    npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]
]:
    """UCI-HAR-like ``(x_train, y_train, x_test, y_test)``; x is float32 ``(n, 9, length)``.

    Defaults match UCI HAR's sizes (7352/2947 windows of 128 samples at 50 Hz, 30
    subjects). Labels are int64 in ``0..5`` following :data:`HAR_CLASSES`.
    """
    data = generate_synthetic_har(
        n_train=n_train,
        n_test=n_test,
        length=length,
        n_subjects=n_subjects,
        noise=noise,
        seed=seed,
    )
    return data.x_train, data.y_train, data.x_test, data.y_test


def generate_synthetic_har(
    n_train: int = 7352,
    n_test: int = 2947,
    length: int = 128,
    n_subjects: int = 30,
    noise: float = 0.2,
    seed: int = 0,
) -> SyntheticHAR:
    """Like :func:`make_synthetic_har` but also returns each window's subject id."""
    _check_args(n_train, n_test, length, n_subjects, noise)
    rng = np.random.default_rng(seed)
    subjects = _draw_subjects(rng, n_subjects)
    n_train_subjects = _n_train_subjects(n_subjects)
    y_tr, s_tr = _draw_labels_and_subjects(rng, n_train, np.arange(n_train_subjects))
    y_te, s_te = _draw_labels_and_subjects(rng, n_test, np.arange(n_train_subjects, n_subjects))
    return SyntheticHAR(
        x_train=_render(rng, y_tr, s_tr, subjects, length, noise),
        y_train=y_tr,
        subjects_train=s_tr,
        x_test=_render(rng, y_te, s_te, subjects, length, noise),
        y_test=y_te,
        subjects_test=s_te,
    )


def _check_args(n_train: int, n_test: int, length: int, n_subjects: int, noise: float) -> None:
    """Fail early with a readable message instead of a numpy broadcasting error."""
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    if n_subjects < 2:
        raise ValueError(f"n_subjects must be >= 2 (train and test are disjoint), got {n_subjects}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")


def _n_train_subjects(n_subjects: int) -> int:
    """UCI HAR puts 21 of 30 volunteers in train; keep that 70/30 ratio, one at least each."""
    return min(max(round(0.7 * n_subjects), 1), n_subjects - 1)


def _draw_subjects(rng: np.random.Generator, n_subjects: int) -> _Subjects:
    """Per-subject traits, drawn once so train and test subjects come from the same population."""
    amp = rng.lognormal(0.0, 0.2, n_subjects)
    freq = rng.normal(1.0, 0.07, n_subjects)
    pitch = rng.normal(0.0, 4.0, n_subjects)
    tilt = np.deg2rad(rng.normal(0.0, 6.0, (n_subjects, 3)))
    return _Subjects(amp=amp, freq=freq, pitch=pitch, rotation=_rotation_matrices(tilt))


def _rotation_matrices(angles: FloatArray) -> FloatArray:
    """Rotation matrices ``Rz @ Ry @ Rx`` for ``(n, 3)`` Euler angles in radians."""
    c, s = np.cos(angles), np.sin(angles)
    n = angles.shape[0]
    rx = np.zeros((n, 3, 3))
    ry = np.zeros((n, 3, 3))
    rz = np.zeros((n, 3, 3))
    rx[:, 0, 0] = 1.0
    rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = c[:, 0], -s[:, 0], s[:, 0], c[:, 0]
    ry[:, 1, 1] = 1.0
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2] = c[:, 1], s[:, 1], -s[:, 1], c[:, 1]
    rz[:, 2, 2] = 1.0
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1] = c[:, 2], -s[:, 2], s[:, 2], c[:, 2]
    return rz @ ry @ rx


def _draw_labels_and_subjects(
    rng: np.random.Generator, n: int, pool: npt.NDArray[np.int_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Balanced labels (counts differ by at most one) and subjects drawn from ``pool``."""
    y = rng.permutation(np.arange(n) % _N_CLASSES).astype(np.int64)
    subjects = rng.choice(pool, size=n).astype(np.int64)
    return y, subjects


def _render(
    rng: np.random.Generator,
    y: npt.NDArray[np.int64],
    subj: npt.NDArray[np.int64],
    subjects: _Subjects,
    length: int,
    noise: float,
) -> npt.NDArray[np.float32]:
    """Windows ``(n, 9, length)`` for labels ``y`` worn by subjects ``subj``."""
    n = int(y.shape[0])
    t: FloatArray = np.arange(length) / SAMPLING_RATE_HZ
    freq: FloatArray = _STEP_HZ[y] * subjects.freq[subj] + rng.normal(0.0, 0.06, n) * _DYNAMIC[y]
    amp = subjects.amp[subj] * rng.lognormal(0.0, 0.12, n)
    phase: FloatArray = rng.uniform(0.0, 2.0 * np.pi, size=n)
    skew = _SKEW[y] + rng.normal(0.0, 0.25, n)
    # The stride angle (half the step angle); every harmonic is an integer multiple of it.
    stride_angle = np.pi * freq[:, None] * t[None, :] + 0.5 * phase[:, None]
    sines, cosines = _multiple_angles(stride_angle.astype(np.float32), int(_HALF_STEPS.max()))

    out = np.empty((n, 9, length), dtype=np.float32)
    body_acc, gyro = out[:, 0:3], out[:, 3:6]
    _harmonics(body_acc, sines, cosines, _ACC_HARM[y] * (_ACC_AMP[y] * amp)[:, None, None], skew)
    _harmonics(
        gyro, sines, cosines, _GYRO_HARM[y] * (_GYRO_AMP[y] * amp)[:, None, None], skew + 0.6
    )
    body_acc += _gaussian(rng, body_acc.shape, noise * _ACC_NOISE_SCALE)
    gyro += _gaussian(rng, gyro.shape, noise * _GYRO_NOISE_SCALE)

    rot = subjects.rotation[subj].astype(np.float32)
    gravity = np.einsum("nij,nj->ni", rot, _gravity(rng, y, subjects.pitch[subj]))
    out[:, 0:3] = np.matmul(rot, body_acc)
    out[:, 3:6] = np.matmul(rot, gyro)
    out[:, 6:9] = out[:, 0:3] + gravity[:, :, None].astype(np.float32)
    return out


def _multiple_angles(angle: npt.NDArray[np.float32], m: int) -> tuple[list[Any], list[Any]]:
    """``sin(k*angle)`` and ``cos(k*angle)`` for k = 0..m by angle addition (two trig calls)."""
    s1, c1 = np.sin(angle), np.cos(angle)
    sines: list[Any] = [np.zeros_like(angle), s1]
    cosines: list[Any] = [np.ones_like(angle), c1]
    for _ in range(2, m + 1):
        s, c = sines[-1], cosines[-1]
        sines.append(s * c1 + c * s1)
        cosines.append(c * c1 - s * s1)
    return sines, cosines


def _harmonics(
    out: npt.NDArray[np.float32],
    sines: list[Any],
    cosines: list[Any],
    amp: FloatArray,
    skew: FloatArray,
) -> None:
    """Fill ``out`` ``(n, 3, T)`` with the per-axis sum of harmonics of amplitude ``amp``.

    ``sin(k*a + off) = sin(k*a) cos(off) + cos(k*a) sin(off)`` turns every harmonic into
    multiply-adds on precomputed tables, so no per-harmonic trig is needed.
    """
    out[...] = 0.0
    for axis in range(3):
        for k in range(_HALF_STEPS.shape[1]):
            offset = _PHASE_OFFSET[axis, k] + (skew if k == 1 else 0.0) * np.ones_like(skew)
            multiple = int(_HALF_STEPS[axis, k])
            a_cos = (amp[:, axis, k] * np.cos(offset)).astype(np.float32)[:, None]
            a_sin = (amp[:, axis, k] * np.sin(offset)).astype(np.float32)[:, None]
            out[:, axis] += sines[multiple] * a_cos + cosines[multiple] * a_sin


def _gaussian(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> Any:
    """Float32 white noise; float32 draws are about twice as fast as float64 ones."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(std)
    return noise


def _gravity(
    rng: np.random.Generator, y: npt.NDArray[np.int64], pitch_offset: FloatArray
) -> FloatArray:
    """Unit gravity vectors ``(n, 3)`` in g from class posture plus subject and window jitter."""
    n = int(y.shape[0])
    pitch = np.deg2rad(_PITCH_DEG[y] + pitch_offset + rng.normal(0.0, 4.0, n))
    roll = np.deg2rad(_ROLL_DEG[y] + rng.normal(0.0, 3.0, n))
    return np.stack(
        [np.cos(pitch) * np.cos(roll), np.cos(pitch) * np.sin(roll), np.sin(pitch)], axis=1
    )
