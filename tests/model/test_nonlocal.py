"""The partial nonlocal block and the mask fusion of the mapping network."""
import pytest
import torch

from oldphoto_model import AttentionOptions, MappingConfig
from oldphoto_model.archs import MappingNetwork, PartialNonLocalBlock, dilate
from oldphoto_model.archs import nonlocal_block as nl_mod


def _block(width=8, n_res=2, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    b = PartialNonLocalBlock(width, n_res).to(dtype)
    for p in b.nu.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return b.eval()


def _mask(h, w, seed, p=0.1, kind="random"):
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(1, 1, h, w, dtype=torch.float64)
    if kind == "random":
        m[0, 0] = (torch.rand(h, w, generator=g) < p).double()
    elif kind == "line":
        m[0, 0, h // 2, :] = 1
    elif kind == "border":
        m[0, 0, 0, :3] = 1
        m[0, 0, -2:, -1] = 1
    elif kind == "full":
        m[:] = 1
    return m


@pytest.mark.parametrize("h,w,kind,tile", [(13, 17, "random", 4), (20, 9, "line", 32), (16, 16, "border", 5),
                                           (11, 23, "random", 1), (9, 9, "full", 4),
                                           (40, 36, "line", 0), (33, 30, "random", 0)])
def test_hole_only_equals_full_computation(h, w, kind, tile):
    block = _block()
    x = torch.randn(2, 8, h, w, dtype=torch.float64)
    m = torch.cat([_mask(h, w, 1, kind=kind), _mask(h, w, 2, kind="random", p=0.05)])
    full = block(x, m, AttentionOptions(hole_only=False))
    fast = block(x, m, AttentionOptions(hole_only=True, tile=tile, chunk_elements=37))
    d = m.bool().expand_as(x)
    assert d.any()
    torch.testing.assert_close(fast[d], full[d], rtol=1e-10, atol=1e-10)


def test_global_branch_ignores_features_at_defects():
    block = _block()
    x = torch.randn(1, 8, 12, 14, dtype=torch.float64)
    m = _mask(12, 14, 3, p=0.2)
    defect = m[0, 0].bool()
    o = block.attention_output(x[0], defect)
    x2 = x.clone()
    x2[0][:, defect] = torch.randn_like(x2[0][:, defect]) * 50
    o2 = block.attention_output(x2[0], defect)
    # rows of intact queries see only intact keys/values: unchanged
    torch.testing.assert_close(o2[:, ~defect], o[:, ~defect], rtol=1e-12, atol=1e-12)
    # changing an intact feature does change them (the check can fail)
    x3 = x.clone()
    x3[0][:, ~defect] += 1.0
    assert not torch.allclose(block.attention_output(x3[0], defect)[:, ~defect], o[:, ~defect])


def test_dilate_is_receptive_field():
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[4, 4] = True
    assert dilate(m, 2).sum() == 25 and dilate(m, 0).sum() == 1


@pytest.fixture
def mapping():
    torch.manual_seed(0)
    net = MappingNetwork(MappingConfig(latent_channels=8, width=16, n_res_local=2, n_res_global=2)).double()
    for p in net.global_branch.nu.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


def test_fusion_keeps_local_branch_at_intact_positions(mapping):
    z = torch.randn(1, 8, 15, 11, dtype=torch.float64)
    m = _mask(15, 11, 4, p=0.15)
    local, fused = mapping.forward_features(z, m)
    intact = ~m.bool().expand_as(local)
    assert torch.equal(fused[intact], local[intact])
    assert not torch.allclose(fused[~intact], local[~intact])


def test_empty_mask_is_local_path_without_attention(mapping, monkeypatch):
    calls = []
    real = nl_mod.masked_attention
    monkeypatch.setattr(nl_mod, "masked_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    z = torch.randn(1, 8, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        out_empty = mapping(z, torch.zeros(1, 1, 10, 10, dtype=torch.float64))
        out_none = mapping(z, None)
    assert calls == []
    assert torch.equal(out_empty, out_none)
    mapping(z, _mask(10, 10, 1, p=0.2))
    assert calls, "a non-empty mask must run the attention"


def test_full_mask_is_defined_and_finite(mapping):
    z = torch.randn(1, 8, 8, 8, dtype=torch.float64)
    m = _mask(8, 8, 0, kind="full")
    local, fused = mapping.forward_features(z, m)
    assert torch.isfinite(fused).all()
    # documented result: no intact key -> O = 0, so the branch is rho_global(nu(0))
    nu_bias = mapping.global_branch.nu.bias.view(1, -1, 1, 1).expand(1, -1, 8, 8)
    torch.testing.assert_close(fused, mapping.global_branch.rho_global(nu_bias.clone()))
