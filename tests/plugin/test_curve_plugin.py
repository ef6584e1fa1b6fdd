"""The GIMP 2.10 plug-in (on the gimpfu stub) against a CURVE server in another process:
with the server's public key it restores; with a wrong one it says so."""
from __future__ import annotations

import pytest

from gimp_plugin.testing.server_process import ServerProcess, reference
from server.client import server_key_from
from server.keys import server_keypair

from .test_gimpfu_plugin import PROC, TUNING, assert_untouched, check_success, make_image, photo


@pytest.fixture(scope="module")
def curve_server(weights, tmp_path_factory):
    keys = tmp_path_factory.mktemp("curve")
    public, _ = server_keypair(str(keys))        # what the server would make on first start
    srv = ServerProcess(weights, extra_args=["--curve", "on", "--key-dir", str(keys)],
                        server_key=public).start()
    yield srv, server_key_from(str(keys / "server.key"))
    srv.stop()


def test_plugin_restores_through_curve_with_the_server_key(gimp2, curve_server):
    srv, key = curve_server
    assert key in srv.output()                       # the server printed it at start-up
    img, _ = photo(32, 48, 3, 30)
    image, layer = make_image(gimp2, (48, 32), (48, 32), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, srv.address, key, *TUNING)
    check_success(gimp2, image, layer, before, original, reference(srv.weights, img))


@pytest.mark.parametrize("key", ["", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"], ids=["missing", "wrong"])
def test_plugin_without_the_right_key_says_so(gimp2, curve_server, key):
    srv, _ = curve_server
    img, _ = photo(32, 48, 3, 31)
    image, layer = make_image(gimp2, (48, 32), (48, 32), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    with pytest.raises(gimp2.gimp.error, match="encrypt"):
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, srv.address, key, *TUNING)
    assert_untouched(gimp2, image, layer, before, original)
