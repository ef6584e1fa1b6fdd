"""The memory-lean banded executor against the plain module forward."""
import pytest
import torch

from oldphoto_model import MappingConfig, VAEConfig
from oldphoto_model.archs import MappingNetwork, VAEDecoder, VAEEncoder
from oldphoto_model.lean import lean_forward


@pytest.fixture(scope="module", params=["instance", "none"])
def nets(request):
    torch.manual_seed(0)
    vae = VAEConfig(channels=8, norm=request.param)
    return (VAEEncoder(vae).eval(), VAEDecoder(vae).eval(),
            MappingNetwork(MappingConfig(latent_channels=8, width=16, n_res_local=2, norm=request.param)).eval())


@pytest.mark.parametrize("h,w", [(36, 52), (44, 20), (16, 16)])
@pytest.mark.parametrize("band", [300, 5000, 1 << 24])
def test_lean_equals_plain(nets, h, w, band):
    enc, dec, mapping = nets
    x = torch.rand(1, 3, h, w, dtype=torch.float64) * 2 - 1
    with torch.inference_mode():
        enc, dec, mapping = enc.double(), dec.double(), mapping.double()
        z = enc(x)
        keep = x.clone()
        torch.testing.assert_close(lean_forward(enc.net, x, band), z, rtol=1e-9, atol=1e-9)
        assert torch.equal(x, keep), "the input must not be modified"
        f = mapping.head(z)
        torch.testing.assert_close(lean_forward(mapping.head, z, band), f, rtol=1e-9, atol=1e-9)
        loc = mapping.local_branch(f)
        torch.testing.assert_close(lean_forward(mapping.local_branch, f, band), loc, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(lean_forward(mapping.tail, loc, band), mapping.tail(loc), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(lean_forward(dec.net, z, band), dec(z), rtol=1e-9, atol=1e-9)


def test_lean_channels_last_bf16_close(nets):
    enc, dec, _ = nets
    enc, dec = enc.float().to(memory_format=torch.channels_last), dec.float().to(memory_format=torch.channels_last)
    x = (torch.rand(1, 3, 40, 36) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = dec(enc(x)).float()
        out = lean_forward(dec.net, lean_forward(enc.net, x, 900), 900).float()
    assert (out - ref).abs().max() < 0.05
