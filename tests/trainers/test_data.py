"""Dataset loading: every format, the preprocessing contract, and every DataError path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainers.data import (
    UNLABELED,
    DataError,
    TimeSeriesSplits,
    bundled_datasets,
    load_alignment_npz,
    load_dataset,
    npz_labels,
    npz_shapes,
    stratified_split,
    subject_split,
    subjects_problem,
)
from trainers.data._typing import LengthPolicy
from trainers.synthetic import HAR_CHANNELS, HAR_CLASSES, generate_synthetic_har

# --------------------------------------------------------------------------- fixture writers


def _standardise(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """What the loader should produce: z-score per channel with ``reference`` statistics."""
    mean = reference.mean(axis=(0, 2), keepdims=True)
    std = np.maximum(reference.std(axis=(0, 2), keepdims=True), 1e-8)
    return (x - mean) / std


def _write_npz(
    path: Path, n: int = 24, channels: int = 2, length: int = 16, **extra: object
) -> Path:
    rng = np.random.default_rng(0)
    arrays: dict[str, object] = {
        "X": rng.normal(size=(n, channels, length)).astype(np.float32),
        "y": np.array(["b", "a", "c"] * (n // 3)),
    }
    arrays.update(extra)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _ts_text(rows: list[tuple[list[list[float]], str]], equal_length: bool = True) -> str:
    labels = sorted({label for _, label in rows})
    header = [
        "# tiny test problem",
        "@problemName Tiny",
        "@timeStamps false",
        "@missing true",
        f"@univariate {'true' if len(rows[0][0]) == 1 else 'false'}",
        f"@equalLength {'true' if equal_length else 'false'}",
        f"@classLabel true {' '.join(labels)}",
        "@data",
    ]
    body = [
        ":".join(",".join(str(v) for v in ch) for ch in chans) + f":{lab}" for chans, lab in rows
    ]
    return "\n".join(header + body) + "\n"


def _ts_rows(n: int, seed: int, length: int = 8) -> list[tuple[list[list[float]], str]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(2, length)).round(3).tolist(), ("up", "down")[i % 2]) for i in range(n)
    ]


def _write_ts_pair(folder: Path, name: str = "Tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_TRAIN.ts").write_text(_ts_text(_ts_rows(10, 0)))
    (folder / f"{name}_TEST.ts").write_text(_ts_text(_ts_rows(6, 1)))
    return folder / f"{name}_TRAIN.ts"


def _write_uci_har(root: Path, n_train: int = 12, n_test: int = 6, length: int = 16) -> Path:
    """The UCI HAR layout; channel c holds t**(c+1) plus noise so its order is checkable."""
    rng = np.random.default_rng(0)
    t = np.linspace(0.1, 1.0, length)
    for split, n in (("train", n_train), ("test", n_test)):
        signals = root / split / "Inertial Signals"
        signals.mkdir(parents=True)
        for c, channel in enumerate(HAR_CHANNELS):
            data = t ** (c + 1) + 0.001 * rng.normal(size=(n, length))
            np.savetxt(signals / f"{channel}_{split}.txt", data, fmt="%.6e")
        labels = np.arange(n) % 6 + 1
        np.savetxt(root / split / f"y_{split}.txt", labels, fmt="%d")
    return root


# --------------------------------------------------------------------------- formats


def test_npz_loads_with_string_labels_and_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = _write_npz(
        tmp_path / "d.npz",
        X_test=rng.normal(size=(6, 2, 16)),
        y_test=np.array(["a", "c"] * 3),
    )
    splits = load_dataset(str(path), val_fraction=0.25)
    assert isinstance(splits, TimeSeriesSplits)
    assert splits.class_names == ["a", "b", "c"]
    assert (splits.n_channels, splits.length, splits.n_classes) == (2, 16, 3)
    assert splits.x_train.shape == (18, 2, 16) and splits.x_val.shape == (6, 2, 16)
    assert splits.x_train.dtype == np.float32 and splits.y_train.dtype == np.int64
    assert splits.x_test is not None and splits.x_test.shape == (6, 2, 16)
    assert splits.y_test is not None and splits.y_test.tolist() == [0, 2] * 3


def test_npz_relative_to_data_dir_and_load_test_false(tmp_path: Path) -> None:
    _write_npz(tmp_path / "d.npz", X_test=np.zeros((3, 2, 16)), y_test=np.array(["a"] * 3))
    splits = load_dataset("d.npz", data_dir=str(tmp_path), load_test=False)
    assert splits.x_test is None and splits.y_test is None


def test_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(6, 1, 4))
    np.savez(tmp_path / "d.npz", X=x, y=np.array(["10", "2", "9"] * 2))
    assert load_dataset(str(tmp_path / "d.npz"), val_fraction=0).class_names == ["2", "9", "10"]


def test_ts_pair_loads_from_train_file_folder_and_data_dir(tmp_path: Path) -> None:
    train_file = _write_ts_pair(tmp_path / "Tiny")
    by_file = load_dataset(str(train_file), val_fraction=0.2)
    by_folder = load_dataset(str(tmp_path / "Tiny"), val_fraction=0.2)
    by_name = load_dataset("Tiny", data_dir=str(tmp_path), val_fraction=0.2)
    for splits in (by_file, by_folder, by_name):
        assert splits.class_names == ["down", "up"]
        assert splits.x_train.shape == (8, 2, 8) and splits.x_val.shape == (2, 2, 8)
        assert splits.x_test is not None and splits.x_test.shape == (6, 2, 8)
        np.testing.assert_array_equal(splits.x_train, by_file.x_train)


def test_ts_pair_in_lower_case_finds_its_test_partner(tmp_path: Path) -> None:
    upper = _write_ts_pair(tmp_path / "Tiny")
    lower = tmp_path / "lower"
    lower.mkdir()
    for path in upper.parent.iterdir():
        (lower / path.name.lower()).write_bytes(path.read_bytes())
    splits = load_dataset(str(lower / upper.name.lower()), val_fraction=0.2)
    assert splits.x_test is not None and splits.x_test.shape == (6, 2, 8)


def test_ts_without_test_partner_has_no_test_split(tmp_path: Path) -> None:
    path = tmp_path / "Solo_TRAIN.ts"
    path.write_text(_ts_text(_ts_rows(6, 0)))
    assert load_dataset(str(path)).x_test is None


def test_uci_har_folder_by_name_and_by_path(tmp_path: Path) -> None:
    root = _write_uci_har(tmp_path / "UCI HAR Dataset")
    by_name = load_dataset("uci_har", data_dir=str(tmp_path), val_fraction=0.5)
    by_path = load_dataset(str(root), val_fraction=0.5)
    for splits in (by_name, by_path):
        assert splits.class_names == list(HAR_CLASSES)
        assert splits.x_train.shape == (6, 9, 16) and splits.x_val.shape == (6, 9, 16)
        assert splits.x_test is not None and splits.x_test.shape == (6, 9, 16)
        assert sorted(splits.y_test.tolist()) == list(range(6))  # type: ignore[union-attr]
    # Channel c follows t**(c+1): the stacking order matches HAR_CHANNELS.
    t = np.linspace(0.1, 1.0, 16)
    shapes = np.stack([(t ** (c + 1) - (t ** (c + 1)).mean()) for c in range(9)])
    x0 = by_name.x_train[0]
    corr = np.corrcoef(np.concatenate([x0, shapes]))[:9, 9:]
    assert corr.argmax(axis=1).tolist() == list(range(9))


def test_synthetic_har_through_load_dataset() -> None:
    splits = load_dataset("synthetic_har", synthetic={"n_train": 120, "n_test": 30, "length": 32})
    assert splits.class_names == list(HAR_CLASSES)
    assert splits.x_train.shape[1:] == (9, 32)
    assert len(splits.x_train) + len(splits.x_val) == 120
    assert splits.x_test is not None and len(splits.x_test) == 30


def test_basic_motions_from_aeons_bundled_copy() -> None:
    assert {"BasicMotions", "JapaneseVowels", "GunPoint"} <= set(bundled_datasets())
    assert "Covid3Month" not in bundled_datasets()  # regression problem, not classification
    splits = load_dataset("BasicMotions")
    assert len(splits.x_train) + len(splits.x_val) == 40
    assert (splits.n_classes, splits.n_channels, splits.length) == (4, 6, 100)
    assert splits.x_test is not None and splits.x_test.shape == (40, 6, 100)
    assert np.bincount(splits.y_val).tolist() == [2, 2, 2, 2]  # stratified


def test_japanese_vowels_unequal_lengths_resample_and_pad() -> None:
    resampled = load_dataset("JapaneseVowels")
    padded = load_dataset("JapaneseVowels", length_policy="pad")
    fixed = load_dataset("JapaneseVowels", length=20)
    assert resampled.n_channels == 12 and resampled.n_classes == 9
    assert resampled.length == padded.length  # the longest train series
    assert fixed.length == 20 and fixed.x_test is not None and fixed.x_test.shape[2] == 20
    # Padding is zeros at the end for short series; resampling leaves no such tails.
    tail_is_zero = np.all(padded.x_train[:, :, -1] == 0, axis=1)
    assert tail_is_zero.mean() > 0.5
    assert not np.all(resampled.x_train[:, :, -1] == 0, axis=1).any()
    for splits in (resampled, padded, fixed):
        assert np.isfinite(splits.x_train).all()


def test_unequal_ts_resamples_and_pads_exactly(tmp_path: Path) -> None:
    rows = [([[0.0, 1.0, 2.0]], "a"), ([[0.0, 1.0, 2.0, 3.0, 4.0]], "b")]
    path = tmp_path / "Uneq_TRAIN.ts"
    path.write_text(_ts_text(rows, equal_length=False))
    resampled = load_dataset(str(path), val_fraction=0)
    raw = np.array([[[0.0, 0.5, 1.0, 1.5, 2.0]], [[0.0, 1.0, 2.0, 3.0, 4.0]]])
    np.testing.assert_allclose(resampled.x_train, _standardise(raw, raw), atol=1e-6)

    padded = load_dataset(str(path), val_fraction=0, length_policy="pad")
    values = np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0])  # statistics skip the padding
    mean, std = values.mean(), values.std()
    expected = (np.array([[[0, 1, 2, 0, 0]], [[0, 1, 2, 3, 4]]], dtype=float) - mean) / std
    expected[0, 0, 3:] = 0.0
    np.testing.assert_allclose(padded.x_train, expected, atol=1e-6)

    shorter = load_dataset(str(path), val_fraction=0, length=3, length_policy="pad")
    assert shorter.length == 3  # longer series are cropped at the end


# --------------------------------------------------------------------------- preprocessing


def test_nan_filled_forward_then_backward(tmp_path: Path) -> None:
    x = np.array(
        [
            [[np.nan, 1.0, np.nan, 3.0, np.nan], [1.0, 2.0, 3.0, 4.0, 5.0]],
            [[2.0, 2.0, 2.0, 2.0, 2.0], [np.nan, np.nan, np.nan, np.nan, np.nan]],
        ]
    )
    np.savez(tmp_path / "d.npz", X=x, y=np.array([0, 1]))
    splits = load_dataset(str(tmp_path / "d.npz"), val_fraction=0)
    filled = np.array([[[1.0, 1.0, 1.0, 3.0, 3.0]], [[2.0, 2.0, 2.0, 2.0, 2.0]]])
    np.testing.assert_allclose(splits.x_train[:, :1], _standardise(filled, filled), atol=1e-6)
    # A channel missing from one series becomes the train mean, i.e. 0 after scaling.
    np.testing.assert_allclose(splits.x_train[1, 1], 0.0)
    assert np.isfinite(splits.x_train).all()


@pytest.mark.parametrize("policy", ["resample", "pad"])
def test_nan_padded_npz_series_are_as_short_as_their_data(
    tmp_path: Path, policy: LengthPolicy
) -> None:
    # tslearn pads unequal series with NaN: the same series as aeon's list form.
    from trainers.data.cleaning import _clean_series

    rng = np.random.default_rng(0)
    lengths = [16, 12, 9, 16]
    ragged = [rng.normal(size=(2, n)).astype(np.float32) for n in lengths]
    padded = np.full((4, 2, 20), np.nan, dtype=np.float32)
    for i, series in enumerate(ragged):
        padded[i, :, : series.shape[1]] = series
    from_list, _ = _clean_series(ragged, None, "list", None, None, policy)
    from_array, _ = _clean_series(padded, None, "array", None, None, policy)
    assert from_array.shape == (4, 2, 16)
    np.testing.assert_array_equal(from_array, from_list)


def test_uci_har_data_dir_may_start_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_uci_har(tmp_path / "UCI HAR Dataset")
    monkeypatch.setenv("HOME", str(tmp_path))
    splits = load_dataset("uci_har", data_dir="~/UCI HAR Dataset", val_fraction=0.5)
    assert splits.x_train.shape == (6, 9, 16)


def test_standardisation_uses_train_statistics_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(40, 2, 10))
    y = np.arange(40) % 2
    x_test = rng.normal(50.0, 3.0, size=(8, 2, 10))
    np.savez(tmp_path / "d.npz", X=x, y=y, X_test=x_test, y_test=y[:8])
    splits = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.25, seed=7)

    train_idx, val_idx = stratified_split(y, 0.25, seed=7)
    reference = x[train_idx]
    np.testing.assert_allclose(splits.x_train, _standardise(reference, reference), atol=1e-5)
    np.testing.assert_allclose(splits.x_val, _standardise(x[val_idx], reference), atol=1e-5)
    assert splits.x_test is not None
    np.testing.assert_allclose(splits.x_test, _standardise(x_test, reference), atol=1e-4)
    assert splits.x_test.mean() > 10  # test was not re-centred on its own statistics


def test_constant_channel_does_not_divide_by_zero(tmp_path: Path) -> None:
    x = np.ones((6, 1, 5))
    np.savez(tmp_path / "d.npz", X=x, y=np.array([0, 1] * 3))
    assert np.all(load_dataset(str(tmp_path / "d.npz")).x_train == 0.0)


@pytest.mark.parametrize("level", [0.0, 5.0, 1013.25])
def test_a_channel_constant_in_train_keeps_test_deviations_at_their_size(
    tmp_path: Path, level: float
) -> None:
    # As scikit-learn's StandardScaler: a zero-spread channel is centred with a scale of 1,
    # where dividing by a tiny floor made a 0.01 deviation in test about 1e6.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2, 16))
    x[:, 1] = level
    x_test = rng.normal(size=(6, 2, 16))
    x_test[:, 1] = level + 0.01 * rng.normal(size=(6, 16))
    y = np.arange(30) % 3
    np.savez(tmp_path / "d.npz", X=x, y=y, X_test=x_test, y_test=y[:6])
    splits = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.2)
    np.testing.assert_array_equal(splits.x_train[:, 1], 0.0)
    assert splits.x_test is not None
    np.testing.assert_allclose(splits.x_test[:, 1], x_test[:, 1] - level, atol=1e-4)


def test_stratified_split_is_seeded_and_proportional() -> None:
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    a_train, a_val = stratified_split(y, 0.2, seed=3)
    b_train, b_val = stratified_split(y, 0.2, seed=3)
    _, c_val = stratified_split(y, 0.2, seed=4)
    np.testing.assert_array_equal(a_val, b_val)
    np.testing.assert_array_equal(a_train, b_train)
    assert not np.array_equal(a_val, c_val)
    assert np.bincount(y[a_val]).tolist() == [2, 4, 6, 8]
    assert sorted(np.concatenate([a_train, a_val]).tolist()) == list(range(100))


def test_classes_of_one_size_take_turns_at_the_extra_validation_series() -> None:
    # equal remainders went to the lowest class numbers at every seed: classes 3..9 of ten
    # were never validated on, whatever split_seed a study tried
    y = np.repeat(np.arange(10), 3)
    validated = set()
    for seed in range(8):
        _, val = stratified_split(y, 0.1, seed)
        assert len(val) == 3 and len(set(y[val])) == 3
        assert np.array_equal(val, stratified_split(y, 0.1, seed)[1])  # still seeded
        validated |= set(y[val].tolist())
    assert len(validated) >= 8


def test_a_zero_validation_fraction_leaves_validation_empty_by_subject() -> None:
    subjects = np.repeat(np.arange(4), 5)
    train, val = subject_split(subjects, 0.0, seed=0)
    assert len(val) == 0 and len(train) == 20


def test_a_channel_of_tiny_values_is_scaled(tmp_path: Path) -> None:
    # an absolute floor of 1e-8 on the std left a channel in tesla or amperes at ~1e-12
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2, 16)) * np.array([1e-12, 1.0])[None, :, None]
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(30) % 3)
    splits = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.2)
    np.testing.assert_allclose(splits.x_train.std(axis=(0, 2)), [1.0, 1.0], rtol=1e-3)


def test_float64_series_are_standardised_before_float32_rounds_them(tmp_path: Path) -> None:
    # a timestamp in seconds and a latitude to 1e-5: cast to float32 first, 16 steps of a
    # timestamp became one value, and the latitude's 1e-5 steps a few
    n, steps = 12, 16
    t = 1.7e9 + np.arange(steps, dtype=np.float64)
    lat = 47.3769 + 1e-5 * np.arange(steps, dtype=np.float64)
    x = np.stack([np.stack([t + 100.0 * i, lat]) for i in range(n)])
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(n) % 2)
    splits = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.25)
    assert splits.x_train.dtype == np.float32
    for channel in (0, 1):
        assert len(np.unique(splits.x_train[0, channel])) == steps
    step = np.diff(splits.x_train[0, 1])
    np.testing.assert_allclose(step, step[0], rtol=1e-3)  # evenly spaced, as written


def test_float64_values_beyond_float32_are_refused(tmp_path: Path) -> None:
    x = np.ones((4, 1, 5))
    x[0, 0, 0] = 1e39
    np.savez(tmp_path / "d.npz", X=x, y=np.arange(4) % 2)
    with pytest.raises(DataError, match="beyond float32"):
        load_dataset(str(tmp_path / "d.npz"))


def test_a_test_split_nobody_scores_is_not_read(tmp_path: Path) -> None:
    # a NaN or an unseen class in y_test stopped every trial, evaluate_test or not
    from trainers.building import load_splits
    from trainers.params import ContrastiveParams

    path = _write_npz(
        tmp_path / "d.npz",
        X_test=np.zeros((3, 2, 16), np.float32),
        y_test=np.array(["a", "z", "b"]),
    )
    p = ContrastiveParams.model_validate({"dataset": str(path)})
    assert load_splits(p).x_test is None
    assert p.input_misfits() == {}
    scored = ContrastiveParams.model_validate({"dataset": str(path), "evaluate_test": True})
    assert "test labels z of" in scored.input_misfits()["evaluate_test"]
    with pytest.raises(DataError, match="never occur in train"):
        load_splits(scored)


def test_nan_in_some_test_labels_is_found_before_a_study(tmp_path: Path) -> None:
    from trainers.params import ContrastiveParams

    path = _write_npz(
        tmp_path / "d.npz",
        X_test=np.zeros((3, 2, 16), np.float32),
        y_test=np.array([0.0, np.nan, 1.0]),
        y=np.array([0.0, 1.0, 2.0] * 8),
    )
    labels = npz_labels(str(path), None)
    assert labels is not None and labels.n_test_unlabeled == 1
    scored = ContrastiveParams.model_validate({"dataset": str(path), "evaluate_test": True})
    assert "1 labels in y_test" in scored.input_misfits()["evaluate_test"]


def test_stratified_split_keeps_singleton_class_in_train() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    train, val = stratified_split(y, 0.5, seed=0)
    assert 8 in train and 2 not in y[val]
    assert len(val) == 5  # round(0.5 * 9), taken from the classes that can spare samples


def test_subject_split_keeps_each_person_on_one_side() -> None:
    # subjects 0..4 with 10, 20, 30, 25, 15 series; a fifth of 100 is 20
    subjects = np.repeat([3, 1, 4, 0, 2], [25, 20, 15, 10, 30])
    train, val = subject_split(subjects, 0.2, seed=0)
    assert not set(subjects[train]) & set(subjects[val])
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    order = np.random.default_rng(0).permutation(5)  # the subjects in the split's order
    counts = np.array([10, 20, 30, 25, 15])[order]
    k = int(np.argmin(np.abs(np.cumsum(counts)[:-1] - 20))) + 1
    assert sorted(set(subjects[val].tolist())) == sorted(order[:k].tolist())
    np.testing.assert_array_equal(val, subject_split(subjects, 0.2, seed=0)[1])
    assert not np.array_equal(val, subject_split(subjects, 0.2, seed=1)[1])


def test_subject_split_leaves_a_subject_on_each_side() -> None:
    subjects = np.array(["ann"] * 9 + ["bo"])
    train, val = subject_split(subjects, 0.8, seed=0)
    assert len(set(subjects[train])) == 1 and len(set(subjects[val])) == 1
    with pytest.raises(ValueError, match="needs >= 2 subjects, got 1"):
        subject_split(np.zeros(5, dtype=int), 0.2, seed=0)


def test_val_split_subject_on_every_source_that_names_subjects(tmp_path: Path) -> None:
    kwargs = {"n_train": 300, "n_test": 0, "seed": 0}
    generated = generate_synthetic_har(**kwargs)
    split = load_dataset("synthetic_har", synthetic=kwargs, val_split="subject")
    train_idx, val_idx = subject_split(generated.subjects_train, 0.2, seed=0)
    np.testing.assert_array_equal(split.y_val, generated.y_train[val_idx])
    assert len(split.y_train) == len(train_idx) and subjects_problem("synthetic_har", None) is None

    root = _write_uci_har(tmp_path / "har", n_train=12)
    assert subjects_problem("uci_har", str(root)) is not None  # no subject file yet
    with pytest.raises(DataError, match="val_split 'subject': this source does not say"):
        load_dataset("uci_har", data_dir=str(root), val_split="subject")
    np.savetxt(root / "train" / "subject_train.txt", np.repeat([1, 3, 5, 7], 3), fmt="%d")
    assert subjects_problem("uci_har", str(root)) is None
    har = load_dataset("uci_har", data_dir=str(root), val_split="subject", val_fraction=0.25)
    assert len(har.y_val) == 3  # one subject's 3 windows

    path = _write_npz(tmp_path / "s.npz", n=24, subjects=np.repeat(np.arange(6), 4))
    assert subjects_problem(str(path), None) is None
    assert len(load_dataset(str(path), val_split="subject").y_val) in (4, 8)
    plain = _write_npz(tmp_path / "plain.npz")
    assert subjects_problem(str(plain), None) is not None
    assert subjects_problem("BasicMotions", None) is not None
    assert subjects_problem(str(tmp_path / "missing.npz"), None) is None  # said elsewhere
    bad = _write_npz(tmp_path / "bad.npz", n=24, subjects=np.zeros(5, dtype=int))
    with pytest.raises(DataError, match="subject ids must be one integer or string per"):
        load_dataset(str(bad), val_split="subject")
    assert "subject ids must be one integer" in str(subjects_problem(str(bad), None))
    assert len(load_dataset(str(bad)).y_val) == 5, "read only where val_split: subject"
    floats = _write_npz(tmp_path / "f.npz", n=24, subjects=np.repeat(np.arange(6.0), 4))
    assert subjects_problem(str(floats), None) is None  # ids saved as floats: 0.0, 1.0, ...
    np.savetxt(root / "train" / "subject_train.txt", [1, 3, 5], fmt="%d")  # too short
    assert len(load_dataset("uci_har", data_dir=str(root)).y_val) == 2
    assert "per training series (12)" in str(subjects_problem("uci_har", str(root)))


def test_a_subject_split_that_leaves_a_class_out_of_training_is_refused(tmp_path: Path) -> None:
    y = np.array(["a", "b"] * 6 + ["c", "c"])  # only subject 9 recorded class c
    subjects = np.array([1, 2, 3, 4, 5, 6] * 2 + [9, 9])
    path = _write_npz(tmp_path / "rare.npz", n=14, y=y, subjects=subjects)
    outcomes = set()
    for seed in range(40):
        try:
            split = load_dataset(str(path), val_split="subject", seed=seed)
            outcomes.add("c in train")
            assert "c" in {split.class_names[i] for i in split.y_train}
        except DataError as exc:
            outcomes.add("refused")
            assert "leaves class c out of training" in str(exc)
    assert outcomes == {"c in train", "refused"}


def test_load_dataset_split_is_reproducible(tmp_path: Path) -> None:
    path = str(_write_npz(tmp_path / "d.npz", n=30))
    a, b = load_dataset(path, seed=5), load_dataset(path, seed=5)
    c = load_dataset(path, seed=6)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    assert np.bincount(a.y_val).tolist() == [2, 2, 2]
    assert len(load_dataset(path, val_fraction=0).x_val) == 0


def test_to_tensors_keeps_the_whole_dataset_on_device(tmp_path: Path) -> None:
    import torch

    splits = load_dataset(str(_write_npz(tmp_path / "d.npz")))
    on_device = splits.to_tensors("cpu")
    assert on_device.x_train.dtype == torch.float32 and on_device.y_train.dtype == torch.int64
    assert tuple(on_device.x_train.shape) == splits.x_train.shape
    assert on_device.x_test is None and on_device.y_test is None
    assert (on_device.n_channels, on_device.length, on_device.n_classes) == (2, 16, 3)
    assert on_device.device == torch.device("cpu")


def test_alignment_npz_pairs_series_with_embeddings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3, 12))
    x[:, 0, 0] = np.arange(20)  # a series' identity survives standardisation (monotone)
    z = np.stack([np.arange(20.0), rng.normal(size=20)], axis=1)
    np.savez(tmp_path / "a.npz", X=x, Z=z)
    splits = load_alignment_npz(tmp_path / "a.npz", val_fraction=0.25, seed=0)
    assert splits.x_train.shape == (15, 3, 12) and splits.z_val.shape == (5, 2)
    assert splits.embed_dim == 2 and splits.z_train.dtype == np.float32
    for xs, zs in ((splits.x_train, splits.z_train), (splits.x_val, splits.z_val)):
        np.testing.assert_array_equal(np.argsort(xs[:, 0, 0]), np.argsort(zs[:, 0]))
    assert splits.to_tensors("cpu").z_train.shape == (15, 2)


def test_importing_the_module_is_cheap() -> None:
    code = (
        "import sys, trainers.data; print(sorted({'aeon', 'torch', 'sklearn'} & set(sys.modules)))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- errors


def _error(match: str, call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(DataError, match=match) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"X": np.zeros((0, 2, 5)), "y": np.zeros(0)}, "empty"),
        ({"X": np.zeros((4, 2, 5)), "y": np.array([0, 1, 0])}, "3 train labels for 4 series"),
        ({"X": np.zeros((4, 10)), "y": np.array([0, 1, 0, 1])}, r"X must be 3-D .* \(4, 10\)"),
        ({"X": np.zeros((4, 1, 5)), "y": np.array([1, 1, 1, 1])}, "single class"),
        ({"X": np.zeros((4, 1, 5)), "y": np.zeros((4, 2))}, "must be 1-D"),
        ({"X": np.zeros((4, 1, 5))}, r"has no labels \(no array y\); only mode: pretrain"),
        (
            {"X": np.zeros((4, 1, 5)), "y": np.array([0, 1, 0, 1]), "X_test": np.zeros((2, 1, 5))},
            "has X_test but no y_test",
        ),
        (
            {
                "X": np.zeros((4, 1, 5)),
                "y": np.array([0, 1, 0, 1]),
                "X_test": np.zeros((2, 1, 5)),
                "y_test": np.array([1, 7]),
            },
            r"test labels \['7'\] never occur in train",
        ),
        ({"X": np.full((4, 2, 5), np.inf), "y": np.array([0, 1, 0, 1])}, "infinite"),
    ],
)
def test_npz_data_errors(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    assert "bad.npz" in _error(match, load_dataset, str(path))


# --------------------------------------------------------------------------- unlabelled series


def test_npz_without_labels_loads_only_where_unlabelled_series_are_allowed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=(10, 2, 8)))
    labels = npz_labels(str(path), None)
    assert labels is not None and not labels.has_y and labels.n_classes == 0
    _error("has no labels", load_dataset, str(path))
    splits = load_dataset(str(path), allow_unlabeled=True, val_fraction=0.2)
    assert splits.class_names == []
    assert (len(splits.y_train), len(splits.y_val)) == (8, 2)
    assert set(splits.y_train) | set(splits.y_val) == {UNLABELED}


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_shapes_come_from_the_headers_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, save: object
) -> None:
    """``hpo validate`` reads Z's width for ``mode: align`` without loading a large X."""
    path = tmp_path / "a.npz"
    save(path, X=np.zeros((7, 3, 5), np.float32), Z=np.zeros((7, 4)), y=np.arange(7))  # type: ignore[operator]
    monkeypatch.setattr(np, "load", None)  # not one array is read
    assert npz_shapes(path) == {"X": (7, 3, 5), "Z": (7, 4), "y": (7,)}


def test_npz_shapes_of_what_is_no_npz_are_left_to_the_reader(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("not a zip")
    assert npz_shapes(tmp_path / "text.npz") is None
    assert npz_shapes(tmp_path / "none.npz") is None
    assert npz_shapes(tmp_path) is None


def test_npz_shapes_skip_members_that_are_no_arrays(tmp_path: Path) -> None:
    """np.load reads an .npz with a metadata member; its arrays are still checked."""
    import zipfile

    path = tmp_path / "meta.npz"
    np.savez(path, X=np.zeros((3, 1, 4)), Z=np.zeros((3, 2)))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("meta.json", '{"source": "sensor"}')
    assert sorted(np.load(path).files) == ["X", "Z", "meta.json"]
    assert npz_shapes(path) == {"X": (3, 1, 4), "Z": (3, 2)}


def test_nan_and_the_unlabeled_label_mark_series_without_a_label(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(20, 1, 6))
    nan_labels = np.array([0.0, 1.0, np.nan, np.nan] * 5)
    np.savez(tmp_path / "nan.npz", X=x, y=nan_labels)
    _error(r"train labels contain nan \(10 of 20\)", load_dataset, str(tmp_path / "nan.npz"))
    splits = load_dataset(str(tmp_path / "nan.npz"), allow_unlabeled=True, val_fraction=0.2)
    assert splits.class_names == ["0.0", "1.0"]
    # unlabelled series are a stratum of their own: each split gets its share
    assert (splits.y_val == UNLABELED).sum() == 2 and (splits.y_train == UNLABELED).sum() == 8
    assert sorted(set(splits.y_train)) == [UNLABELED, 0, 1]

    marked = np.array(["walk", "run", "?", "?"] * 5)
    np.savez(
        tmp_path / "marked.npz", X=x, y=marked, X_test=x[:4], y_test=np.array(["run", "?"] * 2)
    )
    splits = load_dataset(str(tmp_path / "marked.npz"), allow_unlabeled=True, unlabeled_label="?")
    assert splits.class_names == ["run", "walk"]
    assert splits.y_test is not None and list(splits.y_test) == [0, UNLABELED, 0, UNLABELED]


def test_pretraining_leaves_test_labels_train_never_has_out(tmp_path: Path) -> None:
    """The classes (and the model's class count) come from train alone, never from test."""
    x = np.random.default_rng(0).normal(size=(12, 1, 6))
    np.savez(tmp_path / "t.npz", X=x, X_test=x[:4], y_test=np.array(["a", "b", "c", "a"]))
    _error("has no labels", load_dataset, str(tmp_path / "t.npz"))
    with pytest.warns(UserWarning, match=r"test labels \['a', 'b', 'c'\] never occur in train"):
        splits = load_dataset(str(tmp_path / "t.npz"), allow_unlabeled=True)
    assert splits.class_names == []
    assert splits.y_test is not None and set(splits.y_test) == {UNLABELED}
    np.savez(tmp_path / "m.npz", X=x, y=[1, 2] * 6, X_test=x[:4], y_test=[1, 3, 2, 1])
    with pytest.warns(UserWarning, match=r"test labels \['3'\] never occur in train"):
        extra = load_dataset(str(tmp_path / "m.npz"), allow_unlabeled=True)
    assert extra.class_names == ["1", "2"]
    assert extra.y_test is not None and list(extra.y_test) == [0, UNLABELED, 1, 0]
    # labels of another type (strings for ints) are other labels, not a crash
    np.savez(tmp_path / "s.npz", X=x, y=[1, 2] * 6, X_test=x[:4], y_test=["1", "2"] * 2)
    with pytest.warns(UserWarning, match=r"test labels \['1', '2'\] never occur in train"):
        load_dataset(str(tmp_path / "s.npz"), allow_unlabeled=True)
    np.savez(tmp_path / "u.npz", X=x, y=np.array([0, 1] * 6), X_test=x[:4])
    _error("has X_test but no y_test", load_dataset, str(tmp_path / "u.npz"))
    unlabelled_test = load_dataset(str(tmp_path / "u.npz"), allow_unlabeled=True).y_test
    assert unlabelled_test is not None and set(unlabelled_test) == {UNLABELED}
    summary = npz_labels(str(tmp_path / "u.npz"), None)
    assert summary is not None and summary.has_test and not summary.has_test_labels


def test_unseen_test_labels_say_how_many_more(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 5))
    np.savez(
        tmp_path / "m.npz", X=x, y=[0, 1, 0, 1], X_test=np.zeros((8, 1, 5)), y_test=range(2, 10)
    )
    _error(
        r"test labels \['2', '3', '4', '5', '6'\] and 3 more never occur",
        load_dataset,
        str(tmp_path / "m.npz"),
    )


def test_an_unlabeled_label_that_marks_nothing_is_worth_a_warning(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", X=np.zeros((6, 1, 4)), y=np.array([0, 1] * 3))
    with pytest.warns(UserWarning, match=r"unlabeled_label '-1' marks no train series"):
        load_dataset(str(tmp_path / "w.npz"), allow_unlabeled=True, unlabeled_label="-1")


def test_minus_one_is_a_class_unless_it_is_named_the_unlabeled_label(tmp_path: Path) -> None:
    """UCR's binary sets label their classes -1 and 1: only an explicit rule hides one."""
    x = np.random.default_rng(0).normal(size=(8, 1, 6))
    np.savez(tmp_path / "pm.npz", X=x, y=np.array([-1, 1] * 4))
    assert load_dataset(str(tmp_path / "pm.npz")).class_names == ["-1", "1"]
    both = load_dataset(str(tmp_path / "pm.npz"), allow_unlabeled=True)
    assert both.class_names == ["-1", "1"] and UNLABELED not in set(both.y_train)
    one = load_dataset(str(tmp_path / "pm.npz"), allow_unlabeled=True, unlabeled_label=-1)
    assert one.class_names == ["1"]
    assert set(one.y_train) | set(one.y_val) == {UNLABELED, 0}


def test_all_nan_channel_is_named(tmp_path: Path) -> None:
    x = np.zeros((4, 3, 5))
    x[:, 1] = np.nan
    np.savez(tmp_path / "d.npz", X=x, y=np.array([0, 1, 0, 1]))
    _error("channel 1 is NaN in every train series", load_dataset, str(tmp_path / "d.npz"))


def test_all_nan_har_channel_is_named_by_name(tmp_path: Path) -> None:
    root = _write_uci_har(tmp_path / "har")
    np.savetxt(
        root / "train" / "Inertial Signals" / "body_gyro_y_train.txt", np.full((12, 16), np.nan)
    )
    _error(r"channel 4 \(body_gyro_y\)", load_dataset, str(root))


def test_corrupted_npz_names_the_file(tmp_path: Path) -> None:
    good = _write_npz(tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    for name in ("cut.npz", "junk.npz"):
        _error(f"{name}: cannot read .npz \\(not a zip archive", load_dataset, str(tmp_path / name))
    # A readable zip whose compressed member is damaged fails later, on decompression.
    np.savez_compressed(
        tmp_path / "z.npz", X=np.arange(4000.0).reshape(40, 1, 100), y=np.arange(40) % 2
    )
    data = bytearray((tmp_path / "z.npz").read_bytes())
    data[200:260] = bytes(60)
    (tmp_path / "z.npz").write_bytes(bytes(data))
    _error("z.npz: cannot read .npz", load_dataset, str(tmp_path / "z.npz"))


def test_object_arrays_in_npz_are_refused(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((1, 3)), np.zeros((1, 4))
    np.savez(tmp_path / "obj.npz", X=ragged, y=np.array([0, 1]))
    _error("obj.npz: cannot read .npz", load_dataset, str(tmp_path / "obj.npz"))


def test_truncated_ts_file_names_the_file(tmp_path: Path) -> None:
    text = _ts_text(_ts_rows(6, 0))
    path = tmp_path / "Cut_TRAIN.ts"
    path.write_text(text[: text.rindex(":") - 7])  # last series loses its label and a channel
    assert "Cut_TRAIN.ts" in _error("Cut_TRAIN.ts", load_dataset, str(path))


def test_garbage_values_in_ts_file(tmp_path: Path) -> None:
    path = tmp_path / "Junk_TRAIN.ts"
    path.write_text(_ts_text(_ts_rows(4, 0)).replace("@data\n", "@data\n1,2,x:3,4,5:up\n"))
    _error(r"Junk_TRAIN.ts: cannot parse .ts file \(ValueError", load_dataset, str(path))


def test_regression_ts_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Reg_TRAIN.ts"
    path.write_text("@problemName r\n@univariate true\n@targetlabel true\n@data\n1,2,3:0.5\n")
    _error("Reg_TRAIN.ts: no class labels", load_dataset, str(path))


def test_test_file_instead_of_train_file(tmp_path: Path) -> None:
    train = _write_ts_pair(tmp_path / "Tiny")
    _error("Tiny_TEST.ts: this is a test file", load_dataset, str(train.with_name("Tiny_TEST.ts")))


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("1,2,3\n")
    _error(r"d.csv: unsupported file type '.csv'", load_dataset, str(tmp_path / "d.csv"))


def test_unknown_name_lists_bundled_datasets() -> None:
    message = _error("NoSuchSet: unknown dataset", load_dataset, "NoSuchSet")
    assert "BasicMotions" in message and "JapaneseVowels" in message


def test_uci_har_folder_names_first_missing_file(tmp_path: Path) -> None:
    root = _write_uci_har(tmp_path / "har")
    (root / "train" / "Inertial Signals" / "body_gyro_y_train.txt").unlink()
    (root / "test" / "y_test.txt").unlink()
    _error(r"missing train/Inertial Signals/body_gyro_y_train.txt", load_dataset, str(root))
    empty = tmp_path / "empty"
    empty.mkdir()
    _error("missing train/Inertial Signals/body_acc_x_train.txt", load_dataset, str(empty))
    _error("data_dir must point", load_dataset, "uci_har")
    _error("nowhere: folder not found", load_dataset, "uci_har", data_dir=str(tmp_path / "nowhere"))


def test_uci_har_bad_labels_and_ragged_files(tmp_path: Path) -> None:
    root = _write_uci_har(tmp_path / "har")
    np.savetxt(root / "train" / "y_train.txt", np.arange(12) % 7 + 1, fmt="%d")
    _error(r"y_train.txt: labels must be 1..6, found \[7\]", load_dataset, str(root))
    root2 = _write_uci_har(tmp_path / "har2")
    np.savetxt(root2 / "test" / "Inertial Signals" / "total_acc_z_test.txt", np.zeros((6, 15)))
    _error("total_acc_z_test.txt: shape", load_dataset, str(root2))
    (root2 / "train" / "y_train.txt").write_text("1\n2\nthree\n")
    _error("y_train.txt: cannot parse", load_dataset, str(root2))


def test_bad_options_and_synthetic_kwargs() -> None:
    _error("val_fraction", load_dataset, "synthetic_har", val_fraction=1.0)
    _error("length_policy", load_dataset, "synthetic_har", length_policy="crop")
    _error(
        "synthetic_har: bad generator options",
        load_dataset,
        "synthetic_har",
        synthetic={"bogus": 1},
    )


def test_alignment_errors(tmp_path: Path) -> None:
    x = np.zeros((5, 1, 4))
    np.savez(tmp_path / "rows.npz", X=x, Z=np.zeros((4, 3)))
    _error("rows.npz: Z has 4 rows but X has 5 series", load_alignment_npz, tmp_path / "rows.npz")
    np.savez(tmp_path / "flat.npz", X=x, Z=np.zeros(5))
    _error("flat.npz: Z must be a numeric 2-D", load_alignment_npz, tmp_path / "flat.npz")
    np.savez(tmp_path / "noz.npz", X=x)
    _error(r"noz.npz: missing array\(s\) \['Z'\]", load_alignment_npz, tmp_path / "noz.npz")


def test_data_error_is_a_value_error_with_one_line() -> None:
    error = DataError("file.ts", "line one\nline two")
    assert isinstance(error, ValueError)
    assert str(error) == "file.ts: line one line two"
    assert str(DataError("just a message")) == "just a message"


def test_a_channel_unobserved_in_train_is_zero_in_every_split() -> None:
    # NaN in every training series (observed only in validation): the model only ever saw
    # zeros there, so validation's raw values (whatever their unit) must not reach it.
    from trainers.data.cleaning import _standardise as standardise

    x_train = np.stack([np.ones((4, 5)), np.full((4, 5), np.nan)], axis=1).astype(np.float32)
    x_val = np.stack([np.ones((2, 5)), np.full((2, 5), 1013.0)], axis=1).astype(np.float32)
    train, val, _ = standardise(x_train, x_val, None)
    np.testing.assert_array_equal(train[:, 1], 0.0)
    np.testing.assert_array_equal(val[:, 1], 0.0)


def test_a_rewritten_file_is_read_again_by_the_same_process(tmp_path: Path) -> None:
    """Workers cache data across trials; a file changed in between must not be served stale."""
    import os

    from trainers.building import load_splits
    from trainers.params import ContrastiveParams

    path = _write_npz(tmp_path / "d.npz", channels=2)
    p = ContrastiveParams.model_validate({"dataset": str(path)})
    assert load_splits(p).n_channels == 2
    assert load_splits(p) is load_splits(p)  # cached while the file is unchanged
    _write_npz(path, channels=3)
    os.utime(path, ns=(1, 1))  # even with an older mtime: the size differs
    assert load_splits(p).n_channels == 3

    train_ts = _write_ts_pair(tmp_path / "ts")
    p = ContrastiveParams.model_validate({"dataset": str(train_ts), "evaluate_test": True})
    before = load_splits(p)
    test_ts = train_ts.with_name("Tiny_TEST.ts")
    test_ts.write_text(_ts_text(_ts_rows(9, 2)))  # only the partner file changes
    after = load_splits(p)
    assert before.x_test is not None and after.x_test is not None
    assert (len(before.x_test), len(after.x_test)) == (6, 9)

    uci = _write_uci_har(tmp_path / "uci")
    p = ContrastiveParams.model_validate({"dataset": "uci_har", "data_dir": str(uci)})
    assert len(load_splits(p).y_train) + len(load_splits(p).y_val) == 12
    _write_uci_har(tmp_path / "uci2", n_train=15)
    for split in ("train", "test"):
        (uci / split).rename(tmp_path / f"old-{split}")
        (tmp_path / "uci2" / split).rename(uci / split)
    assert len(load_splits(p).y_train) + len(load_splits(p).y_val) == 15


def test_the_fingerprint_follows_a_symlinked_folder_and_ignores_other_files(
    tmp_path: Path,
) -> None:
    from trainers.data import source_fingerprint

    real = _write_uci_har(tmp_path / "real")
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "UCI HAR Dataset").symlink_to(real, target_is_directory=True)
    before = source_fingerprint("uci_har", str(parent))
    assert len(before) == 21  # nine signals and the labels, train and test; the subjects
    (parent / "notes.txt").write_text("not read by the loader")
    assert source_fingerprint("uci_har", str(parent)) == before
    labels = real / "train" / "y_train.txt"
    labels.write_text(labels.read_text() + "1\n")
    assert source_fingerprint("uci_har", str(parent)) != before
