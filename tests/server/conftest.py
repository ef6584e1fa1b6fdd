"""Shared fixtures: a tiny random-weight model (made here, never shipped) and a
real server on loopback TCP, run in a background thread of the test process."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from oldphoto_model import MappingConfig, ModelConfig, RestorationModel, Restorer, VAEConfig, load_model, save_model
from oldphoto_model.archs.detector import DetectorConfig, ScratchDetector
from oldphoto_model.detect import load_detector, save_detector
from server.app import Server
from server.config import ServerConfig

from .helpers import TEST_LIMITS


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory) -> Path:
    """Random weights of a tiny model; the nonlocal block's nu starts at zero, so it
    is randomised too, otherwise the mask would not change the result."""
    torch.manual_seed(1234)
    model = RestorationModel(ModelConfig(vae=VAEConfig(channels=16),
                                         mapping=MappingConfig(latent_channels=16, width=32)))
    torch.nn.init.normal_(model.mapping.global_branch.nu.weight, std=0.1)
    path = tmp_path_factory.mktemp("weights") / "w.pt"
    save_model(model, path, metadata={"purpose": "test, random weights"})
    return path


@pytest.fixture(scope="session")
def reference(weights_path) -> Restorer:
    """The in-process pipeline the server's results are compared with (its own copy
    of the model, so it never shares state with the server's worker)."""
    return Restorer(load_model(weights_path), device="cpu", precision="fp32")


def make_restorer(weights_path) -> Restorer:
    return Restorer(load_model(weights_path), device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def server(weights_path):
    """A server on a free loopback port for the whole session."""
    srv = Server(ServerConfig(bind="tcp://127.0.0.1:*", **TEST_LIMITS), make_restorer(weights_path))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture()
def address(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def detector_path(tmp_path_factory):
    """A small random-weight detector whose file names threshold 0.22 (it flags a fair
    share of a random photo there, so masks are neither empty nor full)."""
    torch.manual_seed(7)
    m = ScratchDetector(DetectorConfig(width=4, levels=2))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.5)
    return save_detector(m, tmp_path_factory.mktemp("det") / "det.pt", {"threshold": 0.22, "purpose": "test"})


@pytest.fixture(scope="session")
def local_detector(detector_path):
    return load_detector(detector_path)


@pytest.fixture(scope="session")
def det_server(weights_path, detector_path):
    srv = Server(ServerConfig(bind="tcp://127.0.0.1:*", **TEST_LIMITS), make_restorer(weights_path),
                 load_detector(detector_path))
    srv.start()
    yield srv
    srv.stop()
