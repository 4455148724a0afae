"""Tests for trainers.augment: batched, seeded time-series augmentations."""

from __future__ import annotations

import time

import pytest
import torch

from trainers.augment import (
    AUGMENTATIONS,
    POLICIES,
    Augmenter,
    AugSpec,
    channel_dropout,
    flip,
    mixup_views,
    parse_policy,
    scaling,
    sign_flip,
    smoothing,
    time_shift,
    time_warp,
)

NAMES = sorted(AUGMENTATIONS)
EXPECTED_NAMES = {
    "jitter",
    "scaling",
    "magnitude_warp",
    "time_warp",
    "crop_resize",
    "time_shift",
    "blockout",
    "channel_dropout",
    "flip",
    "sign_flip",
    "smoothing",
    "freq_mask",
}
# Augmentations that may legitimately leave a given sample unchanged when applied
# (channel_dropout drops each channel with probability 0.1 only).
STRENGTH_FOR_CHANGE = {"channel_dropout": 5.0}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 8, c: int = 3, t: int = 64, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # A non-symmetric, non-periodic signal so that flips/rolls always change it.
    return torch.randn(b, c, t, generator=gen(123)).to(dtype)


def test_registry_names() -> None:
    assert set(AUGMENTATIONS) == EXPECTED_NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_device_and_new_tensor(name: str, dtype: torch.dtype) -> None:
    x = batch(dtype=dtype)
    x_before = x.clone()
    y = AUGMENTATIONS[name](x, gen(), strength=1.0, p=0.7)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert y.device == x.device
    assert y.data_ptr() != x.data_ptr()
    assert torch.equal(x, x_before), "input must not be modified in place"
    assert torch.isfinite(y.float()).all()


@pytest.mark.parametrize("name", NAMES)
def test_p_zero_is_identity(name: str) -> None:
    x = batch()
    g = gen()
    state = g.get_state()
    y = AUGMENTATIONS[name](x, g, strength=3.0, p=0.0)
    assert torch.equal(y, x)
    assert y.data_ptr() != x.data_ptr()
    assert torch.equal(g.get_state(), state), "p=0 must not consume random numbers"


@pytest.mark.parametrize("name", NAMES)
def test_p_one_changes_every_sample(name: str) -> None:
    x = batch(b=16)
    strength = STRENGTH_FOR_CHANGE.get(name, 1.0)
    y = AUGMENTATIONS[name](x, gen(), strength=strength, p=1.0)
    changed = (y - x).abs().flatten(1).amax(dim=1) > 0
    if name == "channel_dropout":
        assert changed.float().mean() > 0.5
    else:
        assert changed.all(), f"{name} left samples {torch.nonzero(~changed).flatten().tolist()}"


@pytest.mark.parametrize("name", NAMES)
def test_p_half_applies_to_some_samples_only(name: str) -> None:
    x = batch(b=64)
    strength = STRENGTH_FOR_CHANGE.get(name, 1.0)
    y = AUGMENTATIONS[name](x, gen(), strength=strength, p=0.5)
    changed = ((y - x).abs().flatten(1).amax(dim=1) > 0).float().mean().item()
    assert 0.15 < changed < 0.85


@pytest.mark.parametrize("name", sorted(set(NAMES) - {"flip", "sign_flip"}))
def test_randomness_is_per_sample(name: str) -> None:
    # Identical samples in a batch must receive different transforms.
    one = torch.randn(1, 4, 96, generator=gen(7))
    x = one.expand(16, -1, -1).contiguous()
    strength = STRENGTH_FOR_CHANGE.get(name, 1.0)
    y = AUGMENTATIONS[name](x, gen(), strength=strength, p=1.0)
    distinct = {tuple(row.tolist()) for row in y.flatten(1)}
    assert len(distinct) > 1


@pytest.mark.parametrize("name", ["flip", "sign_flip"])
def test_deterministic_ops_are_chosen_per_sample(name: str) -> None:
    one = torch.randn(1, 2, 32, generator=gen(7))
    x = one.expand(32, -1, -1).contiguous()
    y = AUGMENTATIONS[name](x, gen(), p=0.5)
    changed = (y != x).flatten(1).any(dim=1)
    assert changed.any() and not changed.all()


@pytest.mark.parametrize("name", NAMES)
def test_seeded_reproducibility(name: str) -> None:
    x = batch()
    a = AUGMENTATIONS[name](x, gen(5), strength=1.5, p=0.6)
    b = AUGMENTATIONS[name](x, gen(5), strength=1.5, p=0.6)
    c = AUGMENTATIONS[name](x, gen(6), strength=1.5, p=0.6)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_same_draws_across_dtypes(name: str) -> None:
    x = batch()
    a = AUGMENTATIONS[name](x, gen(3), p=0.7)
    b = AUGMENTATIONS[name](x.double(), gen(3), p=0.7)
    torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_odd_sizes(name: str) -> None:
    for shape in [(1, 1, 1), (2, 1, 2), (3, 2, 5), (2, 3, 7)]:
        x = torch.randn(*shape, generator=gen())
        y = AUGMENTATIONS[name](x, gen(), strength=2.0, p=1.0)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_invalid_arguments(name: str) -> None:
    fn = AUGMENTATIONS[name]
    with pytest.raises(ValueError):
        fn(torch.randn(4, 16), gen())
    with pytest.raises(ValueError):
        fn(batch(), gen(), p=1.5)
    with pytest.raises(ValueError):
        fn(batch(), gen(), strength=-1.0)
    with pytest.raises(TypeError):
        fn(torch.ones(2, 2, 8, dtype=torch.int64), gen())


def test_strength_zero_is_identity_where_documented() -> None:
    x = batch()
    for name in ["jitter", "scaling", "magnitude_warp", "time_shift", "blockout"]:
        assert torch.equal(AUGMENTATIONS[name](x, gen(), strength=0.0, p=1.0), x), name
    for name in ["time_warp", "crop_resize"]:
        y = AUGMENTATIONS[name](x, gen(), strength=0.0, p=1.0)
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0), name


def test_scaling_factor_has_mean_one() -> None:
    x = torch.ones(4096, 8, 4)
    y = scaling(x, gen(), strength=1.0, p=1.0)
    factors = y[:, :, 0]
    assert torch.allclose(y, factors.unsqueeze(-1).expand_as(y)), "factor is per sample/channel"
    assert abs(factors.mean().item() - 1.0) < 0.005
    assert abs(factors.std().item() - 0.1) < 0.005
    big = scaling(x, gen(1), strength=5.0, p=1.0)[:, :, 0]
    assert abs(big.mean().item() - 1.0) < 0.02


def test_jitter_sigma() -> None:
    x = torch.zeros(256, 4, 64)
    y = AUGMENTATIONS["jitter"](x, gen(), strength=2.0, p=1.0)
    assert abs(y.std().item() - 0.2) < 0.005
    assert abs(y.mean().item()) < 0.005


def test_flip_twice_is_identity() -> None:
    x = batch()
    once = flip(x, gen(), p=1.0)
    assert torch.equal(once, x.flip(-1))
    assert torch.equal(flip(once, gen(), p=1.0), x)
    assert torch.equal(sign_flip(sign_flip(x, gen(), p=1.0), gen(), p=1.0), x)


def test_flip_with_p_is_involution_given_same_seed() -> None:
    x = batch(b=32)
    assert torch.equal(flip(flip(x, gen(9), p=0.5), gen(9), p=0.5), x)


@pytest.mark.parametrize("strength", [1.0, 5.0, 10.0, 100.0])
def test_channel_dropout_never_zeroes_all_channels(strength: float) -> None:
    x = torch.randn(512, 3, 16, generator=gen()) + 5.0  # no exact zeros
    y = channel_dropout(x, gen(), strength=strength, p=1.0)
    alive = (y != 0).flatten(2).any(dim=2)  # (B, C)
    assert alive.any(dim=1).all()
    # Dropped channels are fully zero, kept channels are untouched.
    kept = alive.unsqueeze(-1)
    assert torch.equal(torch.where(kept, x, torch.zeros_like(x)), y)
    if strength >= 10.0:
        assert (alive.sum(dim=1) == 1).all()  # everything dropped but the rescued one
    single = torch.randn(4, 1, 8) + 5.0
    assert torch.equal(channel_dropout(single, gen(), strength=100.0, p=1.0), single)


def test_channel_dropout_rate() -> None:
    x = torch.ones(2048, 16, 2)
    y = channel_dropout(x, gen(), strength=2.0, p=1.0)
    rate = (y[:, :, 0] == 0).float().mean().item()
    assert abs(rate - 0.2) < 0.01


def test_time_shift_preserves_values_per_channel() -> None:
    x = batch(b=16, c=4, t=50)
    y = time_shift(x, gen(), strength=3.0, p=1.0)
    assert torch.equal(x.sort(dim=-1).values, y.sort(dim=-1).values)
    # It is a circular roll, shared by the channels of a sample, by a non-zero offset.
    for i in range(x.shape[0]):
        shifts = [s for s in range(1, 50) if torch.equal(torch.roll(x[i], s, dims=-1), y[i])]
        assert len(shifts) == 1
        assert min(shifts[0], 50 - shifts[0]) <= 15


def test_blockout_zeroes_one_contiguous_block() -> None:
    x = torch.randn(64, 3, 100, generator=gen()) + 10.0
    y = AUGMENTATIONS["blockout"](x, gen(), strength=1.0, p=1.0)
    zero = (y == 0).all(dim=1)  # (B, T): same block for all channels
    assert torch.equal((y == 0).any(dim=1), zero)
    lengths = zero.sum(dim=1)
    assert ((lengths >= 1) & (lengths <= 10)).all()
    for row in zero:
        idx = torch.nonzero(row).flatten()
        assert idx[-1] - idx[0] + 1 == idx.numel()
    assert torch.equal(torch.where(zero.unsqueeze(1), x.new_zeros(()), x), y)


def test_freq_mask_keeps_mean_and_zeroes_a_band() -> None:
    x = batch(b=16, c=2, t=128).double()
    y = AUGMENTATIONS["freq_mask"](x, gen(), strength=1.0, p=1.0)
    torch.testing.assert_close(y.mean(-1), x.mean(-1))
    spec = torch.fft.rfft(y, dim=-1).abs()
    zero_bins = (spec < 1e-9).all(dim=1).sum(dim=1)
    assert ((zero_bins >= 1) & (zero_bins <= 6)).all()


def test_time_warp_keeps_endpoints_and_is_smooth() -> None:
    x = torch.linspace(0, 1, 100).expand(8, 2, 100).contiguous()
    y = time_warp(x, gen(), strength=2.0, p=1.0)
    torch.testing.assert_close(y[..., 0], x[..., 0])
    torch.testing.assert_close(y[..., -1], x[..., -1])
    assert (y.diff(dim=-1) > 0).all(), "warp of a ramp must stay strictly increasing"
    assert not torch.allclose(y, x, atol=1e-3)


def test_crop_resize_of_ramp_is_a_subrange() -> None:
    x = torch.linspace(0, 1, 100).expand(32, 1, 100).contiguous()
    y = AUGMENTATIONS["crop_resize"](x, gen(), strength=1.0, p=1.0)
    span = y[..., -1] - y[..., 0]
    assert ((span >= 0.5 - 1e-5) & (span <= 1.0 + 1e-5)).all()
    assert (y.diff(dim=-1) >= -1e-6).all()


def test_smoothing_matches_a_moving_average() -> None:
    x = batch(b=32, c=2, t=40).double()
    y = smoothing(x, gen(), strength=1.0, p=1.0)
    ks = set()
    for i in range(x.shape[0]):
        for k in (3, 5, 7):
            pad = torch.nn.functional.pad(x[i : i + 1], (k // 2, k // 2), mode="replicate")
            ref = torch.nn.functional.avg_pool1d(pad, k, stride=1)
            if torch.allclose(ref, y[i : i + 1]):
                ks.add(k)
                break
        else:
            pytest.fail(f"sample {i} is not a moving average with kernel 3, 5 or 7")
    assert len(ks) >= 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_device_kept_and_generator_device_checked(name: str) -> None:
    x = batch().cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    y = AUGMENTATIONS[name](x, g, p=0.7)
    assert y.device == x.device and y.shape == x.shape and y.dtype == x.dtype
    with pytest.raises(ValueError, match="device"):
        AUGMENTATIONS[name](x, gen(), p=0.7)
    aug = Augmenter.from_config("strong")
    assert aug(x.bfloat16(), g).device == x.device


# ----------------------------------------------------------------------- mixup


def test_mixup_views() -> None:
    x1 = batch(b=16)
    x2 = batch(b=16) * 2
    m1, m2 = mixup_views(x1, x2, 0.3, gen())
    assert m1.shape == x1.shape and m2.shape == x2.shape
    m1b, m2b = mixup_views(x1, x2, 0.3, gen())
    assert torch.equal(m1, m1b) and torch.equal(m2, m2b)
    # Each mixed sample lies on the segment between its own sample and one partner,
    # the partner is the same for both views, never itself, and lam is in [0.7, 1].
    for i in range(16):
        found = False
        for j in range(16):
            if j == i:
                continue
            d1 = x1[i] - x1[j]
            d2 = x2[i] - x2[j]
            lam1 = ((m1[i] - x1[j]) * d1).sum() / (d1 * d1).sum()
            lam2 = ((m2[i] - x2[j]) * d2).sum() / (d2 * d2).sum()
            if torch.allclose(lam1 * x1[i] + (1 - lam1) * x1[j], m1[i], atol=1e-5) and (
                torch.allclose(lam2 * x2[i] + (1 - lam2) * x2[j], m2[i], atol=1e-5)
            ):
                assert 0.7 - 1e-5 <= lam1 <= 1.0 + 1e-5
                assert 0.7 - 1e-5 <= lam2 <= 1.0 + 1e-5
                found = True
                break
        assert found, f"sample {i} is not a mix with a single partner"


def test_mixup_views_edge_cases() -> None:
    x = batch(b=1)
    a, b = mixup_views(x, x, 0.5, gen())
    assert torch.equal(a, x) and torch.equal(b, x)
    y = batch()
    a, b = mixup_views(y, y, 0.0, gen())
    assert torch.equal(a, y) and torch.equal(b, y)
    with pytest.raises(ValueError):
        mixup_views(y, y, 0.8, gen())
    with pytest.raises(ValueError):
        mixup_views(y, y[:, :1], 0.2, gen())


# -------------------------------------------------------------- specs/policies


def test_policies() -> None:
    assert set(POLICIES) >= {"none", "weak", "default", "strong", "simclr_ts"}
    assert POLICIES["none"] == []
    assert [s.name for s in POLICIES["weak"]] == ["jitter", "scaling"]
    default = [s.name for s in POLICIES["default"]]
    assert default == ["jitter", "scaling", "time_shift", "magnitude_warp", "blockout"]
    strong = [s.name for s in POLICIES["strong"]]
    assert strong[: len(default)] == default
    assert {"time_warp", "crop_resize", "channel_dropout", "freq_mask"} <= set(strong)
    strong_p = {s.name: s.p for s in POLICIES["strong"]}
    for spec in POLICIES["default"]:
        assert strong_p[spec.name] > spec.p
    assert [s.name for s in POLICIES["simclr_ts"]] == [
        "flip",
        "blockout",
        "jitter",
        "crop_resize",
        "magnitude_warp",
        "time_warp",
        "smoothing",
    ]
    for specs in POLICIES.values():
        assert all(isinstance(s, AugSpec) for s in specs)


def test_augspec() -> None:
    spec = AugSpec("jitter")
    assert (spec.p, spec.strength) == (0.5, 1.0)
    with pytest.raises(AttributeError):
        spec.p = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"allowed: .*jitter"):
        AugSpec("nope")
    with pytest.raises(ValueError):
        AugSpec("jitter", p=2.0)
    with pytest.raises(ValueError):
        AugSpec("jitter", strength=-0.1)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_from_config_policy_names(policy: str) -> None:
    aug = Augmenter.from_config(policy)
    assert aug.names == [s.name for s in POLICIES[policy]]
    assert list(aug.specs) == POLICIES[policy]
    x = batch()
    y = aug(x, gen())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.data_ptr() != x.data_ptr()


def test_from_config_lists_and_overrides() -> None:
    aug = Augmenter.from_config(
        ["flip", {"name": "jitter", "p": 0.8, "strength": 2}, AugSpec("scaling", 0.3, 0.5)],
        strength=1.5,
    )
    assert aug.names == ["flip", "jitter", "scaling"]
    assert aug.specs == (
        AugSpec("flip", 0.5, 1.5),
        AugSpec("jitter", 0.8, 3.0),
        AugSpec("scaling", 0.3, 0.75),
    )
    over = Augmenter.from_config("strong", p=1.0, strength=2.0)
    assert all(s.p == 1.0 for s in over.specs)
    assert [s.strength for s in over.specs] == [2.0 * s.strength for s in POLICIES["strong"]]
    assert Augmenter.from_config(aug.to_config()).specs == aug.specs
    assert Augmenter.from_config([{"name": "jitter", "p": "0.25"}]).specs == (
        AugSpec("jitter", 0.25),
    )
    assert "jitter" in repr(aug)
    assert len(aug) == 3


def test_a_recipe_string_is_the_list_it_spells() -> None:
    """A search space offers strings only: a recipe is how it compares augmentation sets."""
    recipe = " jitter(strength=2.5, p=0.8) + channel_dropout(p=0.4)+time_warp "
    assert parse_policy(recipe) == [
        AugSpec("jitter", p=0.8, strength=2.5),
        AugSpec("channel_dropout", p=0.4),
        AugSpec("time_warp"),
    ]
    assert parse_policy("scaling") == [AugSpec("scaling")]  # one augmentation alone
    assert parse_policy("jitter(strength=1e+1)+flip") == [
        AugSpec("jitter", strength=10.0),
        AugSpec("flip"),
    ]
    assert Augmenter.from_config("jitter(strength=2)", strength=0.5).specs == (
        AugSpec("jitter", strength=1.0),
    )


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("nope", r"unknown augmentation policy 'nope'; allowed: default, .*time_warp\)"),
        ("jitter + warp", r"unknown augmentation 'warp'; allowed: blockout"),
        ("jitter(2)", r"jitter: settings are p=... and strength=..., got '2'"),
        ("jitter(name=flip)", r"settings are p=... and strength=..., got 'name=flip'"),
        ("jitter(p=often)", r"jitter: p and strength must be numbers"),
        ("jitter(p=2)", r"jitter: p must be in \[0, 1\]"),
        ("jitter +", r"cannot read '' in augmentation recipe 'jitter \+'"),
        ("jitter(strength=2", r"cannot read 'jitter\(strength=2' in augmentation recipe"),
        ("jitter(strength=2, strength=3)", r"jitter: strength is given twice"),
        ("jitter(p=1.8) + scalling", r"unknown augmentation 'scalling'"),  # names first
        ("__import__('os')", r"unknown augmentation '__import__'; allowed: blockout"),
    ],
)
def test_recipe_errors_name_the_problem(recipe: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_policy(recipe)


def test_from_config_errors() -> None:
    with pytest.raises(ValueError, match=r"allowed: .*default.*strong"):
        Augmenter.from_config("nope")
    with pytest.raises(ValueError, match=r"'warp'.*allowed: .*channel_dropout.*time_warp"):
        Augmenter.from_config(["jitter", "warp"])
    with pytest.raises(ValueError, match=r"allowed: .*time_warp"):
        Augmenter.from_config([{"name": "warp"}])
    with pytest.raises(ValueError, match="name"):
        Augmenter.from_config([{"p": 0.5}])
    with pytest.raises(ValueError, match="unknown augmentation keys"):
        Augmenter.from_config([{"name": "jitter", "sigma": 0.5}])
    with pytest.raises(ValueError):
        Augmenter.from_config([{"name": "jitter", "p": "often"}])
    with pytest.raises(ValueError):
        Augmenter.from_config("default", p=1.5)
    with pytest.raises(ValueError):
        Augmenter.from_config("default", strength=-1.0)


@pytest.mark.parametrize("policy", ["nope", ["jitter", "warp"], [{"name": "jitter", "x": 1}], 3])
def test_parse_policy_is_the_check_from_config_makes(policy: object) -> None:
    """The params schema validates ``augment`` with parse_policy: same errors, same specs."""
    with pytest.raises(ValueError) as parsed:
        parse_policy(policy)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as built:
        Augmenter.from_config(policy)  # type: ignore[arg-type]
    assert str(parsed.value) == str(built.value)
    assert parse_policy("strong") == list(Augmenter.from_config("strong").specs)


def test_augmenter_applies_in_order_and_two_views_differ() -> None:
    x = batch()
    aug = Augmenter.from_config(["flip", "sign_flip"], p=1.0)
    assert torch.equal(aug(x, gen()), -x.flip(-1))
    g = gen(11)
    default = Augmenter.from_config("default")
    v1, v2 = default(x, g), default(x, g)
    assert not torch.equal(v1, v2)
    g2 = gen(11)
    assert torch.equal(default(x, g2), v1) and torch.equal(default(x, g2), v2)
    empty = Augmenter.from_config("none")
    out = empty(x, gen())
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_strong_policy_speed_cpu() -> None:
    # Timing goals live in benchmarks/; this only guards against gross regressions.
    x = torch.randn(128, 9, 128, generator=gen())
    aug = Augmenter.from_config("strong")
    g = gen()
    aug(x, g)  # warm-up
    times = []
    for _ in range(7):
        start = time.perf_counter()
        aug(x, g)
        times.append(time.perf_counter() - start)
    times.sort()
    print(
        f"strong policy on (128, 9, 128) CPU: median {times[3] * 1e3:.1f} ms, "
        f"best {times[0] * 1e3:.1f} ms"
    )
    assert times[0] < 1.0
