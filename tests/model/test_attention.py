"""The fast masked attention against the plain float64 formula."""
import pytest
import torch

from oldphoto_model.archs.attention import masked_attention, masked_attention_reference


def _case(nq, nk, c, p_defect, seed, scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(nq, c, generator=g, dtype=dtype) * scale
    k = torch.randn(nk, c, generator=g, dtype=dtype) * scale
    v = torch.randn(nk, c + 3, generator=g, dtype=dtype)
    intact = torch.rand(nk, generator=g) >= p_defect
    return q, k, v, intact


def _rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("nq,nk,c,p", [(37, 53, 8, 0.3), (100, 77, 16, 0.0), (64, 64, 4, 0.9),
                                        (5, 200, 32, 0.5), (129, 31, 8, 0.97)])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 24])
def test_chunked_equals_reference(nq, nk, c, p, chunk):
    q, k, v, intact = _case(nq, nk, c, p, seed=nq * 7 + nk)
    if not intact.any():
        intact[0] = True
    ref = masked_attention_reference(q, k, v, intact)
    out = masked_attention(q, k, v, intact, backend="chunked", chunk_elements=chunk)
    assert _rel(out, ref) < 1e-5
    # float64 through the fast path: the algorithm itself, not just fp32 rounding
    out64 = masked_attention(q.double(), k.double(), v.double(), intact, "chunked", chunk)
    assert _rel(out64, masked_attention_reference(q.double(), k.double(), v.double(), intact)) < 1e-12


@pytest.mark.parametrize("backend", ["auto", "chunked", "sdpa", "full_matrix"])
def test_backends_equal_reference(backend):
    q, k, v, intact = _case(70, 90, 16, 0.4, seed=3, scale=0.5)
    v = v[:, :16]                       # fused kernels want equal q/v widths
    ref = masked_attention_reference(q, k, v, intact)
    try:
        out = masked_attention(q, k, v, intact, backend=backend)
    except RuntimeError as e:           # no fused kernel for these shapes on this build
        pytest.skip(f"{backend} unavailable here: {e}")
    assert _rel(out, ref) < 1e-5


def test_defect_keys_never_used():
    q, k, v, intact = _case(40, 60, 8, 0.5, seed=11)
    out = masked_attention(q, k, v, intact)
    k2, v2 = k.clone(), v.clone()
    k2[~intact] = torch.randn_like(k2[~intact]) * 100
    v2[~intact] = torch.randn_like(v2[~intact]) * 100
    assert torch.equal(masked_attention(q, k2, v2, intact), out)
    # and a changed intact key does change it (the check above can fail)
    k2[intact.nonzero()[0]] += 5
    assert not torch.allclose(masked_attention(q, k2, v2, intact), out)


def test_no_intact_key_is_zero_not_nan():
    q, k, v, _ = _case(10, 12, 4, 0.0, seed=1)
    none = torch.zeros(12, dtype=torch.bool)
    for backend in ("auto", "chunked", "full_matrix"):
        out = masked_attention(q, k, v, none, backend=backend)
        assert torch.isfinite(out).all() and torch.count_nonzero(out) == 0
    assert torch.count_nonzero(masked_attention_reference(q, k, v, none)) == 0


def test_large_logits_stay_finite():
    # unscaled dot products of wide features are large: softmax must not overflow
    q, k, v, intact = _case(50, 80, 64, 0.3, seed=5, scale=4.0)
    ref = masked_attention_reference(q, k, v, intact)
    out = masked_attention(q, k, v, intact, backend="chunked", chunk_elements=100)
    assert torch.isfinite(out).all()
    assert _rel(out, ref) < 1e-5


def test_gradients_match_reference():
    # training backpropagates through the chunked path
    q, k, v, intact = _case(30, 40, 8, 0.3, seed=9, dtype=torch.float64)
    grads = []
    for fn in (lambda *a: masked_attention(*a, backend="chunked", chunk_elements=50),
               masked_attention_reference):
        qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
        (fn(qq, kk, vv, intact) ** 2).sum().backward()
        grads.append([qq.grad, kk.grad, vv.grad])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("blocks", [1, 3, 16, 1000])
def test_blocks_with_progress_equal_one_call(blocks):
    q, k, v, intact = _case(101, 64, 8, 0.3, seed=13)
    v = v[:, :8]
    seen = []
    out = masked_attention(q, k, v, intact, tick=seen.append, blocks=blocks)
    assert _rel(out, masked_attention_reference(q, k, v, intact)) < 1e-5
    rows = -(-101 // blocks)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == -(-101 // rows)
