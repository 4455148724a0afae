"""MultiHeadAttention against torch's own nn.MultiheadAttention as the reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainers.attention import MultiHeadAttention
from trainers.models import ContrastCrossFormerBlock, create_model

E, HEADS, B, T, PROTOS = 32, 4, 3, 20, 6


def _twins(dropout: float = 0.0) -> tuple[nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(E, HEADS, dropout=dropout, batch_first=True)
    torch.manual_seed(0)
    return ref, MultiHeadAttention(E, HEADS, dropout=dropout)


def test_a_seed_draws_torchs_initial_weights_under_torchs_names() -> None:
    ref, new = _twins()
    assert list(new.state_dict()) == list(ref.state_dict())
    for name, value in ref.state_dict().items():
        assert torch.equal(new.state_dict()[name], value), name
    # checkpoints load both ways
    torch.manual_seed(1)
    other = nn.MultiheadAttention(E, HEADS, batch_first=True)
    new.load_state_dict(other.state_dict())
    other.load_state_dict(new.state_dict())


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_self_attention_matches_torch_with_gradients(mode: str) -> None:
    ref, new = _twins()
    ref.train(mode == "train")
    new.train(mode == "train")
    x = torch.randn(B, T, E, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    expected = ref(x_ref, x_ref, x_ref, need_weights=False)[0]
    got = new(x, x, x)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    grad = torch.randn_like(got)
    expected.backward(grad)
    got.backward(grad)
    assert x.grad is not None and x_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=1e-5)
    assert new.in_proj_weight.grad is not None and ref.in_proj_weight.grad is not None
    torch.testing.assert_close(new.in_proj_weight.grad, ref.in_proj_weight.grad)


def test_keys_shared_by_the_batch_match_torch_with_them_repeated() -> None:
    ref, new = _twins()
    query = torch.randn(B, T, E)
    protos = torch.randn(1, PROTOS, E)
    repeated = protos.expand(B, -1, -1)
    expected = ref(query, repeated, repeated, need_weights=False)[0]
    torch.testing.assert_close(new(query, protos, protos), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(new(query, repeated, repeated), expected, atol=1e-6, rtol=1e-5)


def test_attention_dropout_acts_in_training_only() -> None:
    _, new = _twins(dropout=0.5)
    x = torch.randn(B, T, E)
    new.train()
    assert not torch.equal(new(x, x, x), new(x, x, x))
    torch.manual_seed(3)
    first = new(x, x, x)
    torch.manual_seed(3)
    assert torch.equal(new(x, x, x), first)  # the global RNG decides (gradient cache replays)
    new.eval()
    assert torch.equal(new(x, x, x), new(x, x, x))


def test_bf16_autocast_stays_close_to_float32() -> None:
    _, new = _twins()
    x = torch.randn(B, T, E)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = new(x, x, x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), new(x, x, x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize(
    ("embed_dim", "heads", "dropout", "match"),
    [(30, 4, 0.0, "must divide"), (32, 0, 0.0, "must divide"), (32, 4, 1.0, "dropout")],
)
def test_bad_shapes_and_rates_are_refused(
    embed_dim: int, heads: int, dropout: float, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(embed_dim, heads, dropout=dropout)


def test_the_block_drops_attention_weights_only_when_asked() -> None:
    block = ContrastCrossFormerBlock(E, n_heads=HEADS, dropout=0.2)
    assert block.self_attn.dropout == 0.0 and block.cross_attn.dropout == 0.0
    block = ContrastCrossFormerBlock(E, n_heads=HEADS, dropout=0.2, attn_dropout=0.1)
    assert block.self_attn.dropout == 0.1 and block.cross_attn.dropout == 0.1
    model = create_model("crossformer", in_channels=9, n_classes=6, dim=E, attn_dropout=0.3)
    rates = {m.dropout for m in model.modules() if isinstance(m, MultiHeadAttention)}
    assert rates == {0.3}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_fused_kernels_match_torch_on_shared_and_repeated_keys(amp: bool) -> None:
    """The fused CUDA kernels get stride-0 keys and chunked q/k/v views: same answers."""
    ref, new = _twins()
    ref, new = ref.cuda(), new.cuda()
    query = torch.randn(B, T, E, device="cuda", requires_grad=True)
    protos = torch.randn(1, PROTOS, E, device="cuda", requires_grad=True)
    repeated = protos.detach().expand(B, -1, -1).contiguous().requires_grad_()
    tol = {"atol": 2e-2, "rtol": 2e-2} if amp else {"atol": 1e-5, "rtol": 1e-4}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        shared = new(query, protos, protos)
        copied = new(query, repeated, repeated)
        expected = ref(query, repeated, repeated, need_weights=False)[0]
        self_new = new(query, query, query)
        self_ref = ref(query, query, query, need_weights=False)[0]
    torch.testing.assert_close(shared, copied, **tol)
    torch.testing.assert_close(shared, expected, **tol)
    torch.testing.assert_close(self_new, self_ref, **tol)
    grad = torch.randn_like(shared)
    (g_shared,) = torch.autograd.grad(shared, protos, grad)
    (g_copied,) = torch.autograd.grad(copied, repeated, grad)
    torch.testing.assert_close(g_shared[0], g_copied.sum(dim=0), **tol)
