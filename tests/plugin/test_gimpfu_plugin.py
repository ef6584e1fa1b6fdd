"""The GIMP 2.10 plug-in's real code (installed by the installer) on the gimpfu stub,
against a real server: the scenarios of the GIMP 3 end-to-end test, plus the ones
only a stub can stage (server errors, missing modules, cancel, undo)."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gimp_plugin.common.oldphoto_common import DEFAULTS, SERVER_OPTIONS
from gimp_plugin.testing.selections import scratch_selection, selection_in_layer
from gimp_plugin.testing.server_process import ServerProcess, free_port, reference
from server.client import crop_plan

PROC = "python_fu_oldphoto_restore"
#: The restore tuning arguments after server_key (grow, match_tone, detail, tone, sharpen, black_point,
#: auto_tone) at their defaults.
TUNING = tuple(DEFAULTS[name] for name in SERVER_OPTIONS)


def photo(h, w, c, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(30, 220, (h, w, c), dtype=np.uint8)
    scratch = np.zeros((h, w), bool)
    scratch[h // 2:h // 2 + 2, w // 6:w - w // 6] = True
    img[scratch] = 250
    if c in (2, 4):
        img[..., -1] = 255
        img[: h // 4, : w // 4, -1] = 90
    return img, scratch


def make_image(g, canvas, layer_size, c, offsets, pixels, selection=None, above_bg=True):
    gimp = g.gimp
    W, H = canvas
    base = gimp.GRAY if c <= 2 else gimp.RGB
    image = gimp.Image(W, H, base)
    if above_bg:
        bg = gimp.Layer(image, "background", W, H, gimp.GRAY_IMAGE if c <= 2 else gimp.RGB_IMAGE)
        image.insert_layer(bg)
    types = {1: gimp.GRAY_IMAGE, 2: gimp.GRAYA_IMAGE, 3: gimp.RGB_IMAGE, 4: gimp.RGBA_IMAGE}
    lw, lh = layer_size
    layer = gimp.Layer(image, "photo", lw, lh, types[c])
    image.insert_layer(layer)
    layer.set_offsets(*offsets)
    layer.get_pixel_rgn(0, 0, lw, lh, True, False)[0:lw, 0:lh] = pixels.tobytes()
    if selection is not None:
        image.selection.get_pixel_rgn(0, 0, W, H, True, False)[0:W, 0:H] = selection.tobytes()
    image.undo_stack.clear()
    image.clean_all()
    return image, layer


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def check_success(g, image, layer, before_layers, original, want):
    new = image.layers[0]
    assert [l for l in image.layers if l is not new] == before_layers
    assert new.name == "photo (restored)"
    assert image.layers.index(new) == image.layers.index(layer) - 1       # right above it
    assert new.offsets == layer.offsets and (new.width, new.height) == (layer.width, layer.height)
    assert new.type == layer.type
    assert layer.pixels() == original, "the original layer was written"
    got = np.frombuffer(new.pixels(), np.uint8).reshape(want.shape)
    assert np.array_equal(got, want), f"{int((got != want).sum())} values differ from the server's result"
    # one undo step, a group; undoing it gives back the image as it was
    assert len(image.undo_stack) == 1 and image.undo_stack[0].label == "group"
    assert not g.gimp.log.warnings, g.gimp.log.warnings
    image.undo()
    assert image.layers == before_layers and layer.pixels() == original
    # progress followed the server: started, rose, finished
    updates = [v for k, v in g.gimp.log.progress if k == "update"]
    assert updates and updates[-1] == 1.0 and updates == sorted(updates)
    # in words a person knows: never the server's stage names (encode, map, decode)
    texts = [t for k, t in g.gimp.log.progress if k == "text" and t]
    assert any(t.startswith("Restoring: ") for t in texts), texts
    assert not any(w in t.replace(".", " ").split() for t in texts for w in ("encode", "map", "map-tail", "decode"))
    assert not g.gimp.log.messages


def test_registration(gimp2):
    procs = gimp2.gimpfu.procedures()
    assert list(procs) == ["python-fu-oldphoto-restore", "python-fu-oldphoto-select-scratches"]
    sel = procs["python-fu-oldphoto-select-scratches"]
    assert sel["menu"] == "<Image>/Filters/Enhance" and sel["label"] == "Select Scratches..."
    assert [x[1] for x in sel["params"]] == ["image", "drawable", "server_address", "server_key"]
    assert [x[3] for x in sel["params"][2:]] == ["tcp://127.0.0.1:5587", ""]
    p = procs["python-fu-oldphoto-restore"]
    assert p["menu"] == "<Image>/Filters/Enhance" and p["label"].startswith("Restore Old Photo")
    assert [x[1] for x in p["params"]] == ["image", "drawable", "use_selection", "restrict_to_selection",
                                           "detect_scratches", "server_address", "server_key", "grow",
                                           "match_tone", "detail", "tone", "sharpen", "black_point",
                                           "auto_tone"]
    assert len(p["params"]) == 14          # what a GIMP 2.10 script passes, in this order
    assert gimp2.gimpfu.state["main_called"]
    assert "INDEXED" not in p["imagetypes"]


def test_rgb_feathered_selection_only_selection_changes(gimp2, server):
    img, scratch = photo(90, 140, 3, 0)
    sel = scratch_selection(scratch, (90, 140), (0, 0))
    image, layer = make_image(gimp2, (140, 90), (140, 90), 3, (0, 0), img, sel)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, server.address, "", *TUNING)
    want = reference(server.weights, img, sel, True, crop_plan(140, 90, bbox(sel)))
    check_success(gimp2, image, layer, before, original, want)


def test_rgba_layer_larger_than_canvas_whole_layer(gimp2, server):
    img, scratch = photo(110, 150, 4, 1)
    off = (-20, -12)
    sel = scratch_selection(scratch, (96, 128), off)
    image, layer = make_image(gimp2, (128, 96), (150, 110), 4, off, img, sel)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, False, False, server.address, "", *TUNING)
    want = reference(server.weights, img, selection_in_layer(sel, (110, 150), off))
    check_success(gimp2, image, layer, before, original, want)


def test_gray_layer_smaller_than_canvas_no_selection(gimp2, server):
    img, _ = photo(64, 90, 1, 2)
    image, layer = make_image(gimp2, (128, 96), (90, 64), 1, (17, 9), img)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, server.address, "", *TUNING)
    check_success(gimp2, image, layer, before, original, reference(server.weights, img[..., 0]).reshape(img.shape))


def test_gray_alpha_selection_partly_outside_layer(gimp2, server):
    img, scratch = photo(70, 100, 2, 3)
    off = (40, 30)
    sel = scratch_selection(scratch, (96, 128), off)
    sel[5:20, 5:30] = 255          # selected, but outside the layer: ignored
    image, layer = make_image(gimp2, (128, 96), (100, 70), 2, off, img, sel)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, server.address, "", *TUNING)
    m = selection_in_layer(sel, (70, 100), off)
    want = reference(server.weights, img, m, True, crop_plan(100, 70, bbox(m)))
    check_success(gimp2, image, layer, before, original, want)


def test_selection_ignored_when_not_used(gimp2, server):
    img, scratch = photo(48, 64, 3, 4)
    sel = scratch_selection(scratch, (48, 64), (0, 0))
    image, layer = make_image(gimp2, (64, 48), (64, 48), 3, (0, 0), img, sel)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, False, True, False, server.address, "", *TUNING)
    check_success(gimp2, image, layer, before, original, reference(server.weights, img))


def assert_untouched(g, image, layer, before, original):
    assert image.layers == before and layer.pixels() == original
    assert image.undo_stack == [] and image.dirty == 0
    assert not g.gimp.log.warnings, g.gimp.log.warnings


def test_server_absent_message_within_two_seconds(gimp2):
    img, _ = photo(32, 48, 3, 5)
    image, layer = make_image(gimp2, (48, 32), (48, 32), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    dead = f"tcp://127.0.0.1:{free_port()}"
    t = time.monotonic()
    with pytest.raises(gimp2.gimp.error) as e:
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, dead, "", *TUNING)
    assert time.monotonic() - t < 2.5
    assert "python -m server --bind " + dead in str(e.value) and "`" not in str(e.value)
    assert not gimp2.gimp.log.messages     # a script gets the error status, no message box
    assert_untouched(gimp2, image, layer, before, original)


def test_interactive_failure_is_a_message_not_a_traceback(gimp2):
    """From the menu (gimpfu's dialog) an error is one message box; gimpfu would add a
    traceback dialog for an exception."""
    gf = gimp2.gimpfu
    img, _ = photo(32, 48, 3, 12)
    image, layer = make_image(gimp2, (48, 32), (48, 32), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    dead = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(gimp2.gimp.error):
        getattr(gf.pdb, PROC)(image, layer, True, True, False, dead, "", *TUNING)   # remembers the address
    gimp2.gimp.log.reset()
    status, err = gf.run_procedure("python-fu-oldphoto-restore", gf.RUN_INTERACTIVE, image, layer)
    assert status == gf.PDB_SUCCESS and err == ""
    assert len(gimp2.gimp.log.messages) == 1 and dead in gimp2.gimp.log.messages[0]
    assert_untouched(gimp2, image, layer, before, original)


@pytest.fixture(scope="module")
def small_server(weights):
    """A server that accepts at most 1000 pixels (its --max-pixels)."""
    pytest.importorskip("server.cli")
    srv = ServerProcess(weights, extra_args=["--max-pixels", "1000"]).start()
    yield srv
    srv.stop()


def test_layer_too_large_is_said_at_once_with_what_to_do(gimp2, small_server):
    """The client asks the server's limits first: nothing is sent (ZeroMQ would drop an
    oversized message without an answer) and the message says what to do."""
    img, _ = photo(40, 60, 4, 6)
    image, layer = make_image(gimp2, (60, 40), (60, 40), 4, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    t = time.monotonic()
    with pytest.raises(gimp2.gimp.error) as e:
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, small_server.address, "", *TUNING)
    assert time.monotonic() - t < 2.0
    text = str(e.value)
    assert "60 x 40 pixels" in text and "nothing was sent" in text and small_server.address in text
    assert "Image > Scale Image" in text and "python -m server --max-pixels 2400" in text
    gimp2.gimp.log.reset()
    gimp2.gimpfu.run_procedure("python-fu-oldphoto-restore", gimp2.gimpfu.RUN_INTERACTIVE, image, layer)
    assert len(gimp2.gimp.log.messages) == 1 and "--max-pixels 2400" in gimp2.gimp.log.messages[0]
    assert_untouched(gimp2, image, layer, before, original)
    assert small_server.alive()


def test_server_error_shown_nothing_half_made(gimp2, small_server, monkeypatch):
    """A server whose info gives no limits (an older one) gets the request and answers
    with a typed error: its own message reaches the person."""
    import importlib
    client = importlib.import_module("oldphoto_client")     # the copy installed beside the plug-in
    monkeypatch.setattr(client.Client, "limits", lambda self: {})
    img, _ = photo(40, 60, 3, 6)
    image, layer = make_image(gimp2, (60, 40), (60, 40), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    with pytest.raises(gimp2.gimp.error) as e:
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, small_server.address, "", *TUNING)
    # the server's own message, shown to the person
    assert "server reported an error" in str(e.value) and "exceeds the server's limits" in str(e.value)
    gimp2.gimpfu.run_procedure("python-fu-oldphoto-restore", gimp2.gimpfu.RUN_INTERACTIVE, image, layer)
    assert "exceeds the server's limits" in gimp2.gimp.log.messages[-1]
    assert_untouched(gimp2, image, layer, before, original)
    assert small_server.alive()


@pytest.mark.parametrize("address,meant", [
    ("localhost:5587", "tcp://localhost:5587"), ("127.0.0.1:5587", "tcp://127.0.0.1:5587"),
    ("tcp://127.0.0.1", "tcp://127.0.0.1:5587"), ("tcp://host:notaport", "1 to 65535")])
def test_mistyped_address_is_said_at_once(gimp2, address, meant):
    img, _ = photo(32, 48, 3, 15)
    image, layer = make_image(gimp2, (48, 32), (48, 32), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    t = time.monotonic()
    with pytest.raises(gimp2.gimp.error) as e:
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, address, "", *TUNING)
    assert time.monotonic() - t < 1.0
    assert f"The server address {address} cannot work" in str(e.value) and meant in str(e.value)
    assert_untouched(gimp2, image, layer, before, original)


def test_restore_tuning_reaches_the_server(gimp2, server):
    """Grow, tone matching, detail, tone and sharpen, changed from their defaults, give
    the model package's result with those options; tone alone changes it too."""
    h, w = 40, 56
    img, scratch = photo(h, w, 3, 16)
    sel = scratch_selection(scratch, (h, w), (0, 0))
    image, layer = make_image(gimp2, (w, h), (w, h), 3, (0, 0), img, sel)
    before, original = list(image.layers), layer.pixels()
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, server.address, "", 3, False, 0.5, 1.0, 1.2, 0.0,
                                    0.5)
    tuning = {"grow": 3, "match_tone": False, "detail": 0.5, "sharpen": 1.2, "black_point": 0.0, "auto_tone": 0.5}
    region = crop_plan(w, h, bbox(sel))
    want = reference(server.weights, img, sel, True, region, options=dict(tuning, tone=1.0))
    check_success(gimp2, image, layer, before, original, want)
    assert not np.array_equal(want, reference(server.weights, img, sel, True, region))
    assert not np.array_equal(want, reference(server.weights, img, sel, True, region, options=tuning))


@pytest.mark.parametrize("tuning,what", [
    ((65, True, 1.0, 0.25, 0.4, 0.5, 1.0), "Grow scratch mask (px) must be from 0 to 64"),
    ((0, True, 1.5, 0.25, 0.4, 0.5, 1.0), "Keep film grain/detail must be from 0.0 to 1.0"),
    ((0, True, 1.0, -0.5, 0.4, 0.5, 1.0), "Restore tone and colour must be from 0.0 to 1.0"),
    ((0, True, 1.0, 0.25, 3.0, 0.5, 1.0), "Sharpen edges must be from 0.0 to 2.0"),
    ((0, True, 1.0, 0.25, 0.4, 2.0, 1.0), "Restore faded blacks must be from 0.0 to 1.0"),
    ((0, True, 1.0, 0.25, 0.4, 0.5, 1.2), "Correct fading and tint must be from 0.0 to 1.0")])
def test_out_of_range_tuning_is_refused_by_name(gimp2, tuning, what):
    img, _ = photo(24, 32, 3, 17)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    with pytest.raises(gimp2.gimp.error, match=re.escape(what)):
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, "tcp://127.0.0.1:1", "", *tuning)


def test_failure_while_adding_layer_leaves_nothing(gimp2, server, monkeypatch):
    img, _ = photo(32, 48, 3, 7)
    image, layer = make_image(gimp2, (48, 32), (48, 32), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()

    def broken(self):
        raise gimp2.gimp.error("disk full")
    monkeypatch.setattr(gimp2.gimp.Drawable, "merge_shadow", lambda self, undo=True: broken(self))
    with pytest.raises(gimp2.gimp.error):
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, server.address, "", *TUNING)
    assert image.layers == before and layer.pixels() == original
    # the group holds the insertion and its removal: consistent, and undoing it is a no-op
    assert not gimp2.gimp.log.warnings
    while image.undo_stack:
        image.undo()
    assert image.layers == before


def test_indexed_is_refused(gimp2, server):
    g = gimp2.gimp
    image = g.Image(32, 24, g.INDEXED)
    layer = g.Layer(image, "photo", 32, 24, g.INDEXED_IMAGE)
    image.insert_layer(layer)
    # the menu entry is greyed out (image types), and a direct call explains why
    status, _ = gimp2.gimpfu.run_procedure("python-fu-oldphoto-restore", gimp2.gimpfu.RUN_INTERACTIVE, image, layer)
    assert status == gimp2.gimpfu.PDB_CALLING_ERROR
    with pytest.raises(RuntimeError) as e:
        gimp2.plugin.restore_old_photo(image, layer, True, True, False, server.address)
    assert "indexed" in str(e.value).lower() and "Image > Mode" in str(e.value)
    assert image.layers == [layer]


def test_high_bit_depth_is_refused_with_reason(gimp2, server):
    img, _ = photo(24, 32, 3, 13)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    layer.bpp = 6      # a 16-bit RGB layer: its pixel regions hold 2 bytes per channel
    with pytest.raises(gimp2.gimp.error) as e:
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, server.address, "", *TUNING)
    assert "8 bit integer" in str(e.value) and len(image.layers) == 2


def test_missing_pyzmq_names_python_and_command(gimp2, monkeypatch):
    monkeypatch.setitem(sys.modules, "zmq", None)      # import zmq -> ImportError
    monkeypatch.delitem(sys.modules, "oldphoto_client", raising=False)
    img, _ = photo(24, 32, 3, 8)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    with pytest.raises(gimp2.gimp.error) as e:
        getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, "tcp://127.0.0.1:1", "", *TUNING)
    msg = str(e.value)
    assert sys.executable in msg and "-m pip install pyzmq msgpack" in msg
    assert len(image.layers) == 2


def test_plugin_registers_without_pyzmq(tmp_path):
    """The menu entry must survive a GIMP Python without pyzmq/msgpack: import the plug-in
    with both blocked, in a fresh interpreter."""
    from gimp_plugin import installer
    STUB_DIR = installer.HERE / "testing" / "gimpfu_stub"
    dest = tmp_path / "p"
    installer.install("2.10", dest)
    code = textwrap.dedent(f"""
        import sys
        sys.modules['zmq'] = None; sys.modules['msgpack'] = None
        sys.path[:0] = [{str(STUB_DIR)!r}, {str(dest)!r}]
        import gimpfu, oldphoto_restore
        print(sorted(gimpfu.procedures()))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "python-fu-oldphoto-restore" in r.stdout


def test_last_values_remembered(gimp2, server):
    gf = gimp2.gimpfu
    img, _ = photo(24, 32, 3, 9)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    getattr(gf.pdb, PROC)(image, layer, False, False, False, server.address, "", *TUNING)
    status, err = gf.run_procedure("python-fu-oldphoto-restore", gf.RUN_WITH_LAST_VALS, image, layer)
    assert status == gf.PDB_SUCCESS, err          # used the remembered address, not the default
    assert len(image.layers) == 4


def test_should_cancel_cancels_and_leaves_nothing(gimp2, server):
    img, scratch = photo(96, 128, 3, 10)
    image, layer = make_image(gimp2, (128, 96), (128, 96), 3, (0, 0), img)
    before, original = list(image.layers), layer.pixels()
    host = gimp2.plugin._Host(image, layer)
    calls = []
    host.should_cancel = lambda: calls.append(1) or len(calls) > 1
    with pytest.raises(gimp2.common.PluginError) as e:
        gimp2.common.run(host, {"server_address": server.address})
    assert e.value.kind == "cancelled"
    assert_untouched(gimp2, image, layer, before, original)


def test_gimp_killing_the_plugin_mid_restore(tmp_path, server):
    """GIMP's Cancel kills the plug-in process: the server survives and serves the next one."""
    from gimp_plugin import installer
    STUB_DIR = installer.HERE / "testing" / "gimpfu_stub"
    dest = tmp_path / "p"
    installer.install("2.10", dest)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path[:0] = [{str(STUB_DIR)!r}, {str(dest)!r}]
        import gimp, gimpfu, oldphoto_restore
        image = gimp.Image(1024, 768, gimp.RGB)
        layer = gimp.Layer(image, 'photo', 1024, 768, gimp.RGB_IMAGE)
        image.insert_layer(layer)
        layer.get_pixel_rgn(0, 0, 1024, 768, True, False)[0:1024, 0:768] = np.random.default_rng(0).integers(0, 255, 1024 * 768 * 3, dtype=np.uint8).tobytes()
        orig = gimp.progress_update
        def update(f):
            orig(f); print('progress', f, flush=True)
        gimp.progress_update = update
        gimpfu.pdb.python_fu_oldphoto_restore(image, layer, True, True, False, {server.address!r}, "",
                                              *{TUNING!r})
        print('finished', flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    saw = []
    for line in p.stdout:
        saw.append(line)
        if line.startswith("progress") and float(line.split()[1]) > 0.05:
            p.kill()                     # what GIMP does on Cancel
            break
    p.wait(30)
    assert p.returncode != 0 and not any("finished" in s for s in saw), saw
    assert any(s.startswith("progress") for s in saw), saw     # it was killed mid-restore
    from server.client import Client
    c = Client(server.address)
    try:
        c.ping(timeout=5.0)
        out, _ = c.restore(bytes(16 * 16 * 3), 16, 16, 3)
        assert len(out) == 16 * 16 * 3
    finally:
        c.close()
    assert server.alive()


def test_detect_scratches_only_when_server_offers(gimp2, blind_server):
    """A server without scratch detection: the option is dropped (the whole layer is restored
    without a mask, nothing unknown is sent) and the dialog would not offer it."""
    img, _ = photo(24, 32, 3, 11)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, True, blind_server.address, "", *TUNING)
    assert np.array_equal(np.frombuffer(image.layers[0].pixels(), np.uint8).reshape(img.shape),
                          reference(blind_server.weights, img))
    assert "detect_scratches" not in gimp2.common.dialog_options(blind_server.address)


def _detected(detector, img):
    from oldphoto_model.detect import detect, load_detector
    mask = detect(img, load_detector(str(detector)))[1]
    assert 0 < (mask > 0).mean() < 1, "the test needs a partial mask"
    return mask


def test_detect_scratches_when_nothing_is_selected(gimp2, det_server, detector):
    """Ticked, nothing selected, a server that offers detection: the server restores with
    the mask its detector finds (restore with detect), the result is one new layer."""
    img, _ = photo(24, 32, 3, 12)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    assert "detect_scratches" in gimp2.common.dialog_options(det_server.address)
    original, before = layer.pixels(), list(image.layers)
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, True, det_server.address, "", *TUNING)
    from oldphoto_model.detect import DETECT_GROW
    want = reference(det_server.weights, img, _detected(detector, img), options={"grow": DETECT_GROW})
    assert not np.array_equal(want, reference(det_server.weights, img))
    check_success(gimp2, image, layer, before, original, want)
    # unticked: no detection, the plain restore
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, True, True, False, det_server.address, "", *TUNING)
    assert np.array_equal(np.frombuffer(image.layers[0].pixels(), np.uint8).reshape(img.shape),
                          reference(det_server.weights, img))


SELECT = "python_fu_oldphoto_select_scratches"


def _selection(image):
    return np.frombuffer(image.selection.pixels(), np.uint8).reshape(image.height, image.width)


@pytest.mark.parametrize("offsets", [(0, 0), (-6, 5)], ids=["aligned", "offset"])
def test_select_scratches_makes_the_selection(gimp2, det_server, detector, offsets):
    """Select Scratches: the detected mask becomes the selection (at the layer's offsets,
    clipped to the canvas), in one undo step that gives the old selection back; the
    layer and the layer stack are unchanged and no channel is left behind."""
    g = gimp2
    assert g.gimpfu.procedures()["python-fu-oldphoto-select-scratches"]["menu"] == "<Image>/Filters/Enhance"
    assert g.gimpfu.procedures()["python-fu-oldphoto-select-scratches"]["label"] == "Select Scratches..."
    img, _ = photo(30, 40, 4, 13)
    W, H = 44, 28
    old_sel = np.zeros((H, W), np.uint8)
    old_sel[2:6, 3:9] = 255
    image, layer = make_image(g, (W, H), (40, 30), 4, offsets, img, selection=old_sel)
    original, before = layer.pixels(), list(image.layers)
    getattr(g.gimpfu.pdb, SELECT)(image, layer, det_server.address, "")
    mask = _detected(detector, img)
    want = np.zeros((H, W), np.uint8)
    ox, oy = offsets
    x0, y0, x1, y1 = max(0, ox), max(0, oy), min(W, ox + 40), min(H, oy + 30)
    want[y0:y1, x0:x1] = mask[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    assert np.array_equal(_selection(image), want)
    assert layer.pixels() == original and image.layers == before and image.channels == []
    assert len(image.undo_stack) == 1 and image.undo_stack[0].label == "group"
    assert not g.gimp.log.warnings, g.gimp.log.warnings
    updates = [v for k, v in g.gimp.log.progress if k == "update"]
    assert updates and updates[-1] == 1.0 and updates == sorted(updates)
    image.undo()
    assert np.array_equal(_selection(image), old_sel) and image.channels == []


def test_select_scratches_from_the_menu_says_what_it_found(gimp2, det_server, server):
    g = gimp2
    img, _ = photo(24, 32, 3, 15)
    image, layer = make_image(g, (32, 24), (32, 24), 3, (0, 0), img)
    g.gimpfu._shelf["python-fu-oldphoto-select-scratches"] = [det_server.address, ""]   # last values
    status, err = g.gimpfu.run_procedure("python-fu-oldphoto-select-scratches", g.gimpfu.RUN_INTERACTIVE,
                                         image, layer)
    assert status == g.gimpfu.PDB_SUCCESS, err
    assert "selected" in g.gimp.log.messages[-1] and "Restore Old Photo" in g.gimp.log.messages[-1]
    # a flat layer: the shipped detector (the session server) finds nothing; the selection stays
    flat = np.full((24, 32, 3), 128, np.uint8)
    image, layer = make_image(g, (32, 24), (32, 24), 3, (0, 0), flat)
    g.gimpfu._shelf["python-fu-oldphoto-select-scratches"] = [server.address, ""]
    status, err = g.gimpfu.run_procedure("python-fu-oldphoto-select-scratches", g.gimpfu.RUN_INTERACTIVE,
                                         image, layer)
    assert status == g.gimpfu.PDB_SUCCESS, err
    assert "found no scratches" in g.gimp.log.messages[-1]
    assert not _selection(image).any() and image.undo_stack == []


def test_select_scratches_failures_leave_the_image_alone(gimp2, blind_server):
    g = gimp2
    img, _ = photo(24, 32, 3, 16)
    sel = np.zeros((24, 32), np.uint8)
    sel[3:7, 4:20] = 200
    dead = f"tcp://127.0.0.1:{free_port()}"
    for address, words in ((blind_server.address, "cannot find scratches"), (dead, "python -m server")):
        image, layer = make_image(g, (32, 24), (32, 24), 3, (0, 0), img, selection=sel)
        with pytest.raises(g.gimp.error) as e:       # a script's call: an error status with the message
            getattr(g.gimpfu.pdb, SELECT)(image, layer, address, "")
        assert words in str(e.value) and address in str(e.value)
        assert np.array_equal(_selection(image), sel) and image.undo_stack == [] and image.channels == []


def test_restoring_a_result_again_numbers_it(gimp2, server):
    img, _ = photo(24, 32, 3, 14)
    image, layer = make_image(gimp2, (32, 24), (32, 24), 3, (0, 0), img)
    getattr(gimp2.gimpfu.pdb, PROC)(image, layer, False, False, False, server.address, "", *TUNING)
    first = image.layers[0]
    getattr(gimp2.gimpfu.pdb, PROC)(image, first, False, False, False, server.address, "", *TUNING)
    assert [l.name for l in image.layers[:3]] == ["photo (restored 2)", "photo (restored)", "photo"]
