"""The synthetic HAR generator: shapes, determinism, physics, and that it is not too easy."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from trainers.synthetic import (
    HAR_CHANNELS,
    HAR_CLASSES,
    SAMPLING_RATE_HZ,
    generate_synthetic_har,
    make_synthetic_har,
)


def test_shapes_dtypes_and_label_range() -> None:
    x_tr, y_tr, x_te, y_te = make_synthetic_har(n_train=120, n_test=60, length=64)
    assert x_tr.shape == (120, len(HAR_CHANNELS), 64) and x_tr.dtype == np.float32
    assert x_te.shape == (60, 9, 64) and x_te.dtype == np.float32
    assert y_tr.dtype == np.int64 and y_te.dtype == np.int64
    assert set(np.unique(y_tr)) == set(range(len(HAR_CLASSES)))
    assert np.isfinite(x_tr).all() and np.isfinite(x_te).all()


def test_default_sizes_match_uci_har_and_generate_fast() -> None:
    start = time.perf_counter()
    x_tr, _, x_te, _ = make_synthetic_har()
    elapsed = time.perf_counter() - start
    assert x_tr.shape == (7352, 9, 128) and x_te.shape == (2947, 9, 128)
    # a guard against gross regressions only (vectorised: well under a second alone);
    # speed goals live in benchmarks/, and tests share the CPU with each other
    assert elapsed < 6.0, f"10k windows took {elapsed:.2f}s"


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = make_synthetic_har(n_train=60, n_test=30, seed=3)
    b = make_synthetic_har(n_train=60, n_test=30, seed=3)
    c = make_synthetic_har(n_train=60, n_test=30, seed=4)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a[0], c[0])


def test_classes_are_balanced() -> None:
    _, y_tr, _, y_te = make_synthetic_har(n_train=601, n_test=100)
    for y in (y_tr, y_te):
        counts = np.bincount(y, minlength=6)
        assert counts.max() - counts.min() <= 1


def test_train_and_test_subjects_are_disjoint_like_uci_har() -> None:
    data = generate_synthetic_har(n_train=500, n_test=200, n_subjects=30)
    train, test = set(data.subjects_train.tolist()), set(data.subjects_test.tolist())
    assert not train & test
    assert len(train) == 21 and len(test) == 9


def test_total_acc_is_body_acc_plus_constant_gravity_of_one_g() -> None:
    x, _, _, _ = make_synthetic_har(n_train=300, n_test=0, noise=0.0)
    gravity = x[:, 6:9] - x[:, 0:3]
    np.testing.assert_allclose(gravity, gravity[:, :, :1].repeat(x.shape[2], axis=2), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(gravity[:, :, 0], axis=1), 1.0, atol=1e-4)


def _dominant_hz(x: np.ndarray) -> float:
    """Peak of the mean amplitude spectrum of the vertical body acceleration."""
    spectrum = np.abs(np.fft.rfft(x[:, 0] - x[:, 0].mean(axis=1, keepdims=True), axis=1))
    freqs = np.fft.rfftfreq(x.shape[2], d=1.0 / SAMPLING_RATE_HZ)
    return float(freqs[spectrum.mean(axis=0).argmax()])


def test_gait_has_activity_specific_step_frequencies() -> None:
    x, y, _, _ = make_synthetic_har(n_train=600, n_test=0, length=512, noise=0.05)
    walking, upstairs, downstairs = (_dominant_hz(x[y == c]) for c in range(3))
    assert 1.7 <= walking <= 2.1
    assert upstairs < walking < downstairs


def _features(x: np.ndarray) -> np.ndarray:
    """A simple hand-made baseline: per-channel mean, std and low-frequency spectrum."""
    spectrum = np.abs(np.fft.rfft(x, axis=-1))[..., 1:16]
    return np.concatenate([x.mean(-1), x.std(-1), spectrum.reshape(len(x), -1)], axis=1)


def _accuracy(train_x: np.ndarray, y_tr: np.ndarray, test_x: np.ndarray, y_te: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(train_x, y_tr)
    return float(model.score(test_x, y_te))


def test_not_trivially_separable_but_learnable() -> None:
    x_tr, y_tr, x_te, y_te = make_synthetic_har(n_train=360, n_test=180, length=64, seed=1)
    raw = _accuracy(x_tr.reshape(len(x_tr), -1), y_tr, x_te.reshape(len(x_te), -1), y_te)
    feats = _accuracy(_features(x_tr), y_tr, _features(x_te), y_te)
    assert raw < 0.95, f"linear model on raw data too good: {raw:.3f}"
    assert feats > 0.6, f"feature baseline near chance: {feats:.3f}"


@pytest.mark.parametrize(
    "kwargs",
    [{"n_train": 0}, {"n_test": -1}, {"length": 1}, {"n_subjects": 1}, {"noise": -0.1}],
)
def test_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        make_synthetic_har(**kwargs)  # type: ignore[arg-type]
