"""Tests for trainers.models: shapes, option grid, prototype init, pretrain->finetune, registry."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from trainers.attention import MultiHeadAttention
from trainers.models import (
    DEFAULT_MODEL,
    MODELS,
    ContrastCrossFormerBlock,
    ConvEncoderModel,
    ModelOutput,
    TimeSeriesContrastiveModel,
    count_parameters,
    create_model,
    register_model,
)

B, C, T, N_CLASSES = 8, 9, 128, 6


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny models: thread start-up and oversubscription cost more than they save.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(B, C, T)


def _small(**kwargs: object) -> TimeSeriesContrastiveModel:
    opts: dict[str, object] = {"dim": 32, "dropout": 0.0}
    opts.update(kwargs)
    return TimeSeriesContrastiveModel(C, N_CLASSES, **opts)  # type: ignore[arg-type]


GRID = list(
    itertools.product(
        [False, True],  # use_cbam
        [False, True],  # use_dim_reduction
        ["linear", "mlp"],  # proto_proj
        [4, 8],  # n_heads
        [1, 2],  # depth
    )
)


@pytest.mark.parametrize(("use_cbam", "use_dim_reduction", "proto_proj", "n_heads", "depth"), GRID)
def test_option_grid_forward_backward(
    x: torch.Tensor,
    use_cbam: bool,
    use_dim_reduction: bool,
    proto_proj: str,
    n_heads: int,
    depth: int,
) -> None:
    model = TimeSeriesContrastiveModel(
        C,
        N_CLASSES,
        use_cbam=use_cbam,
        use_dim_reduction=use_dim_reduction,
        proto_proj=proto_proj,
        n_heads=n_heads,
        depth=depth,
    )
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (B, N_CLASSES)
    assert out.embedding.shape == (B, 64)
    assert out.projection.shape == (B, 64)
    loss = out.logits.logsumexp(-1).mean() + out.projection.pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has non-finite gradient"
    # Prototypes take part in the forward pass, so they must learn.
    for block in model.encoder.iter_blocks():
        assert block.prototypes.grad is not None and block.prototypes.grad.abs().sum() > 0


def test_output_shapes_custom_widths(x: torch.Tensor) -> None:
    model = TimeSeriesContrastiveModel(
        C, 3, dim=48, proj_dim=16, proto_proj="mlp", proj_hidden_dim=24, n_heads=4
    )
    logits, embedding, projection = model(x)
    assert logits.shape == (B, 3)
    assert embedding.shape == (B, 48)
    assert projection.shape == (B, 16)
    assert model.embed(x).shape == (B, 48)


def test_defaults_and_submodules() -> None:
    model = create_model(DEFAULT_MODEL, in_channels=C, n_classes=N_CLASSES)
    assert isinstance(model, TimeSeriesContrastiveModel)
    assert model.n_prototypes == N_CLASSES  # None -> n_classes
    assert len(model.encoder.blocks) == 1
    block = next(model.encoder.iter_blocks())
    assert isinstance(block.prototypes, nn.Parameter)
    assert block.prototypes.shape == (N_CLASSES, 64)
    assert isinstance(model.classifier, nn.Linear)
    assert isinstance(model.projector, nn.Linear)


def test_dim_reduction_prototypes_live_at_working_dim() -> None:
    model = _small(dim=64, use_dim_reduction=True, reduction_dim=16, n_prototypes=5)
    block = next(model.encoder.iter_blocks())
    assert block.prototypes.shape == (5, 16)
    assert block.working_dim == 16


def test_projector_depth() -> None:
    deep = _small(proto_proj="mlp", proj_depth=3)
    linears = [m for m in deep.projector.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4
    assert sum(isinstance(m, nn.BatchNorm1d) for m in deep.projector.modules()) == 3
    with pytest.raises(ValueError, match="proj_depth"):
        _small(proto_proj="mlp", proj_depth=0)
    with pytest.raises(ValueError, match="proto_proj"):
        _small(proto_proj="conv")


def test_n_heads_must_divide_working_dim() -> None:
    with pytest.raises(ValueError, match=r"n_heads=5 must divide .*dim=64"):
        TimeSeriesContrastiveModel(C, N_CLASSES, n_heads=5)
    with pytest.raises(ValueError, match=r"n_heads=3 must divide .*reduction_dim=32"):
        ContrastCrossFormerBlock(48, n_heads=3, use_dim_reduction=True, reduction_dim=32)
    # 48 / 3 divides, but the working dim is the reduced 32.
    ContrastCrossFormerBlock(48, n_heads=3)


def test_block_shape_and_prototype_similarity() -> None:
    block = ContrastCrossFormerBlock(64, n_prototypes=7, use_dim_reduction=True)
    tokens = torch.randn(B, 20, 64)
    assert block(tokens).shape == (B, 20, 64)
    sim = block.prototype_similarity(torch.randn(B, 64))
    assert sim.shape == (B, 7)
    assert (sim.abs() <= 1 + 1e-5).all()


def _class_means_loop(feats: torch.Tensor, y: torch.Tensor, n_classes: int) -> list[torch.Tensor]:
    means = []
    for c in range(n_classes):
        rows = [feats[i] for i in range(len(y)) if int(y[i]) == c]
        means.append(torch.stack(rows).mean(0))
    return means


@pytest.mark.parametrize("use_dim_reduction", [False, True])
def test_class_mean_init_matches_loop(use_dim_reduction: bool) -> None:
    model = _small(dim=32, depth=2, use_dim_reduction=use_dim_reduction, reduction_dim=16)
    xs = torch.randn(50, C, 32)
    ys = torch.arange(50) % N_CLASSES
    model.eval()
    with torch.no_grad():
        feats = model.embed(xs)
    model.train()
    expected = _class_means_loop(feats, ys, N_CLASSES)

    model.init_prototypes_from_class_means(xs, ys, batch_size=7)  # uneven batches on purpose

    assert model.training, "train mode must be restored"
    for block in model.encoder.iter_blocks():
        with torch.no_grad():
            want = torch.stack([block.in_proj(m) for m in expected])
        torch.testing.assert_close(block.prototypes.detach(), want, atol=1e-5, rtol=1e-5)
    # Each class mean is now at cosine similarity 1 with its own prototype.
    with torch.no_grad():
        sim = model.prototype_similarity(torch.stack(expected), block=0)
    assert sim.shape == (N_CLASSES, N_CLASSES)
    torch.testing.assert_close(sim.diagonal(), torch.ones(N_CLASSES), atol=1e-5, rtol=0)


def test_class_mean_init_more_and_fewer_prototypes() -> None:
    xs = torch.randn(30, C, 32)
    ys = torch.arange(30) % N_CLASSES

    more = _small(n_prototypes=N_CLASSES + 2)
    more.eval()
    with torch.no_grad():
        expected = torch.stack(_class_means_loop(more.embed(xs), ys, N_CLASSES))
    before = next(more.encoder.iter_blocks()).prototypes.detach().clone()
    more.init_prototypes_from_class_means(xs, ys)
    after = next(more.encoder.iter_blocks()).prototypes.detach()
    torch.testing.assert_close(after[:N_CLASSES], expected, atol=1e-5, rtol=1e-5)
    assert not torch.equal(after[N_CLASSES:], before[N_CLASSES:])  # redrawn
    assert torch.isfinite(after).all()

    fewer = _small(n_prototypes=4)
    fewer.eval()
    with torch.no_grad():
        expected = torch.stack(_class_means_loop(fewer.embed(xs), ys, N_CLASSES))
    fewer.init_prototypes_from_class_means(xs, ys)
    got = next(fewer.encoder.iter_blocks()).prototypes.detach()
    torch.testing.assert_close(got, expected[:4], atol=1e-5, rtol=1e-5)


def test_class_mean_init_absent_class_keeps_prototype_and_validates() -> None:
    model = _small()
    xs = torch.randn(12, C, 32)
    ys = torch.tensor([0, 1, 2, 3, 4] * 2 + [0, 1])  # class 5 absent
    before = next(model.encoder.iter_blocks()).prototypes.detach().clone()
    model.init_prototypes_from_class_means(xs, ys)
    after = next(model.encoder.iter_blocks()).prototypes.detach()
    torch.testing.assert_close(after[5], before[5])
    with pytest.raises(ValueError, match="labels must lie"):
        model.init_prototypes_from_class_means(xs, ys + 5)
    with pytest.raises(ValueError, match="one label per sample"):
        model.init_prototypes_from_class_means(xs, ys[:-1])
    with pytest.raises(ValueError, match=r"x must be \(N, 9, T\)"):
        model.init_prototypes_from_class_means(torch.randn(12, 4, 32), ys)


def test_encoder_state_dict_round_trip(x: torch.Tensor) -> None:
    pretrained = _small(depth=2, proto_proj="mlp")
    with torch.no_grad():  # make the weights differ from a fresh init
        for p in pretrained.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    sd = pretrained.encoder_state_dict()
    assert not any(k.startswith(("classifier", "projector")) for k in sd)

    finetune = _small(depth=2, proto_proj="linear")
    finetune.load_encoder_state_dict(sd)
    pretrained.eval()
    finetune.eval()
    with torch.no_grad():
        torch.testing.assert_close(finetune.embed(x), pretrained.embed(x))

    # A full model state dict works too.
    other = _small(depth=2)
    other.load_encoder_state_dict(pretrained.state_dict())
    other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other.embed(x), pretrained.embed(x))

    # The copy is detached from the live model.
    with torch.no_grad():
        next(pretrained.encoder.parameters()).add_(1.0)
    assert not torch.equal(next(iter(sd.values())), next(pretrained.encoder.parameters()))


def test_encoder_channel_mismatch_error() -> None:
    pretrained = TimeSeriesContrastiveModel(6, N_CLASSES, dim=32)
    model = TimeSeriesContrastiveModel(9, N_CLASSES, dim=32)
    with pytest.raises(ValueError, match="encoder was pretrained on 6 channels, data has 9"):
        model.load_encoder_state_dict(pretrained.encoder_state_dict())
    wider = TimeSeriesContrastiveModel(9, N_CLASSES, dim=64)
    with pytest.raises(ValueError, match="dim=64, model has dim=32"):
        model.load_encoder_state_dict(wider.encoder_state_dict())
    with pytest.raises(ValueError, match="not an encoder state dict"):
        model.load_encoder_state_dict({})


def test_registry() -> None:
    assert {"crossformer", "conv"} <= set(MODELS)
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*conv.*crossformer"):
        create_model("nope", in_channels=C, n_classes=2)
    with pytest.raises(ValueError, match="already registered"):
        register_model("conv")(TimeSeriesContrastiveModel)
    # Same object again is fine (e.g. module reload).
    register_model("conv")(ConvEncoderModel)
    assert isinstance(create_model("conv", in_channels=C, n_classes=2), ConvEncoderModel)


def test_conv_baseline_same_interface(x: torch.Tensor) -> None:
    # Attention-only options are accepted so one search space can switch models.
    model = create_model(
        "conv", in_channels=C, n_classes=N_CLASSES, depth=2, n_heads=8, proto_proj="mlp"
    )
    assert isinstance(model, ConvEncoderModel)
    out = model(x)
    assert out.logits.shape == (B, N_CLASSES)
    assert out.embedding.shape == (B, 64)
    assert out.projection.shape == (B, 64)
    out.projection.sum().backward()
    assert not any(isinstance(m, MultiHeadAttention) for m in model.modules())
    other = ConvEncoderModel(C, 3)
    other.load_encoder_state_dict(model.encoder_state_dict())
    with pytest.raises(ValueError, match="pretrained on 9 channels, data has 6"):
        ConvEncoderModel(6, 3).load_encoder_state_dict(model.encoder_state_dict())


@pytest.mark.parametrize("name", ["crossformer", "conv"])
def test_eval_determinism_and_train_dropout(name: str, x: torch.Tensor) -> None:
    model = create_model(name, in_channels=C, n_classes=N_CLASSES, dropout=0.5)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    # Batch independence in eval mode: a sample's output doesn't depend on its batch mates.
    with torch.no_grad():
        single = model(x[:1])
    torch.testing.assert_close(single.logits, a.logits[:1], atol=1e-5, rtol=1e-4)


def test_parameter_counts() -> None:
    narrow = TimeSeriesContrastiveModel(C, N_CLASSES, dim=32)
    wide = TimeSeriesContrastiveModel(C, N_CLASSES, dim=64)
    assert 0 < count_parameters(narrow) < count_parameters(wide)
    assert count_parameters(_small(use_dim_reduction=True, dim=64, reduction_dim=16)) < (
        count_parameters(_small(dim=64))
    )
    for p in wide.encoder.parameters():
        p.requires_grad_(False)
    assert count_parameters(wide) == sum(p.numel() for p in wide.classifier.parameters()) + sum(
        p.numel() for p in wide.projector.parameters()
    )


def test_bf16_autocast_cpu(x: torch.Tensor) -> None:
    model = _small(use_dim_reduction=True, proto_proj="mlp", depth=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        loss = out.logits.float().logsumexp(-1).mean() + out.projection.float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_torch_compile_traces_without_graph_breaks(x: torch.Tensor) -> None:
    # fullgraph=True fails on any data-dependent Python control flow in forward; the eager
    # backend keeps this test fast (no code generation).
    model = _small(depth=2, use_dim_reduction=True)
    model.eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        want = model(x)
        got = compiled(x)
    torch.testing.assert_close(got.logits, want.logits)
