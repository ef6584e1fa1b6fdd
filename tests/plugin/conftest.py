"""Fixtures for the plug-in tests: a real server subprocess and the GIMP 2.10 plug-in,
installed by the installer and imported against the gimpfu stub."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from gimp_plugin import installer
from gimp_plugin.testing.server_process import ServerProcess, make_detector, make_weights

STUB = Path(installer.HERE) / "testing" / "gimpfu_stub"
_PLUGIN_MODULES = ("gimp", "gimpfu", "oldphoto_restore", "oldphoto_common", "oldphoto_client")


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    return make_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="session")
def server(weights):
    pytest.importorskip("server.cli", reason="the server package is not importable")
    srv = ServerProcess(weights).start()   # a server that cannot start is a failure, not a skip
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def detector(tmp_path_factory):
    """A random-weight scratch detector file whose masks are partial on the test photos."""
    return make_detector(tmp_path_factory.mktemp("detector") / "det.pt")


@pytest.fixture(scope="session")
def det_server(weights, detector):
    """A server with that detector (the session's ``server`` has the shipped one)."""
    srv = ServerProcess(weights, detector=detector).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def blind_server(weights):
    """A server without scratch detection (``--detector none``)."""
    srv = ServerProcess(weights, detector="none").start()
    yield srv
    srv.stop()


class Gimp2:
    """The installed GIMP 2.10 plug-in loaded into this process against the stub."""

    def __init__(self, dest: Path):
        self.dest = dest
        for m in _PLUGIN_MODULES:
            sys.modules.pop(m, None)
        sys.path.insert(0, str(STUB))
        sys.path.insert(0, str(dest))
        self.gimp = importlib.import_module("gimp")
        self.gimpfu = importlib.import_module("gimpfu")
        self.gimpfu._reset()
        self.gimp.log.reset()
        self.plugin = importlib.import_module("oldphoto_restore")   # runs register() and main()
        self.common = sys.modules["oldphoto_common"]

    def close(self):
        sys.path[:] = [p for p in sys.path if p != str(STUB) and not p.startswith(str(self.dest))]
        for m in _PLUGIN_MODULES:
            sys.modules.pop(m, None)


@pytest.fixture
def gimp2(tmp_path):
    dest = tmp_path / "plug-ins"
    installer.install("2.10", dest)
    g = Gimp2(dest)
    yield g
    g.close()
