"""Shared fixtures: small random-weight models exist only here, never as a product."""
from __future__ import annotations

import pytest
import torch

from oldphoto_model import MappingConfig, ModelConfig, RestorationModel, VAEConfig

TINY = ModelConfig(vae=VAEConfig(channels=8), mapping=MappingConfig(latent_channels=8, width=16))


def random_model(config: ModelConfig = TINY, seed: int = 0) -> RestorationModel:
    """A random-weight model whose global branch is switched on (nu is zero at init)."""
    torch.manual_seed(seed)
    m = RestorationModel(config)
    if m.mapping.global_branch is not None:
        for p in m.mapping.global_branch.nu.parameters():
            torch.nn.init.normal_(p, std=0.2)
    return m.eval()


@pytest.fixture(scope="session")
def tiny_model() -> RestorationModel:
    return random_model()


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (other work shares the 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
