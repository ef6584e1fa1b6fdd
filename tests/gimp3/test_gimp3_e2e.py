"""End to end in a real GIMP 3.0 (headless, in a Debian trixie chroot): the plug-in
installed by the installer, called through the PDB non-interactively, against the
project's real server on the host. Skipped with the reason printed where GIMP 3
cannot run (no root, no debootstrap, no Debian archive)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gimp3  # noqa: E402

from gimp_plugin import installer  # noqa: E402
from gimp_plugin.common import oldphoto_common as common  # noqa: E402
from gimp_plugin.testing.selections import scratch_selection, selection_in_layer  # noqa: E402
from gimp_plugin.testing.server_process import (  # noqa: E402
    ServerProcess,
    free_port,
    make_detector,
    reference,
)

pytestmark = [pytest.mark.gimp3, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


def photo(h, w, c, seed):
    """A smooth synthetic 'photo' with a bright scratch drawn in; returns (pixels, scratch mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([96 + 60 * np.sin(xx / 17 + k) * np.cos(yy / 23 - k) for k in range(3)], -1)
    base += rng.normal(0, 6, base.shape)
    scratch = np.zeros((h, w), bool)
    for x in range(w // 6, w - w // 6):   # a slanted line, 2-3 px wide
        y = int(h * 0.3 + 0.25 * (x - w // 6))
        if 0 <= y < h - 2:
            scratch[y:y + 2 + (x % 2), x] = True
    base[scratch] = 250
    rgb = np.clip(base, 0, 255).astype(np.uint8)
    if c in (1, 2):
        img = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
    else:
        img = rgb
    if c in (2, 4):
        alpha = np.full((h, w, 1), 255, np.uint8)
        alpha[: h // 5, : w // 5] = 128
        img = np.concatenate([img, alpha], -1)
    return np.ascontiguousarray(img), scratch


@pytest.fixture(scope="module")
def gimp_ready():
    reason = gimp3.unavailable_reason()
    if reason:
        print(f"\n[gimp3] SKIPPED: {reason}")
        pytest.skip(f"real GIMP 3 unavailable: {reason}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("server.cli", reason="the server package is not importable")
    from oldphoto_model import default_weights_path
    srv = ServerProcess(default_weights_path()).start()   # the shipped model, as a user gets it   # a server that cannot start is a failure, not a skip
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def det_server(tmp_path_factory):
    """The shipped restoration model with a random-weight scratch detector whose masks are
    partial (the shipped detector, tuned for few false alarms, marks little of a test photo)."""
    pytest.importorskip("server.cli", reason="the server package is not importable")
    from oldphoto_model import default_weights_path
    detector = make_detector(tmp_path_factory.mktemp("detector") / "det.pt")
    srv = ServerProcess(default_weights_path(), detector=detector).start()
    srv.detector = detector
    yield srv
    srv.stop()


def run_cases(share: Path, cases: list[dict], env: dict | None = None) -> list[dict]:
    (share / "spec.json").write_text(json.dumps({"cases": cases}))
    t = time.time()
    r = gimp3.run_batch(share, (HERE / "batch_restore.py").read_text(), timeout=240, env=env)
    print(f"[gimp3] {len(cases)} case(s) in {time.time() - t:.1f} s")
    assert r.returncode == 0, f"GIMP batch failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    # GIMP says so when a plug-in returns with an undo group still open
    assert "inconsistent state" not in r.stderr, r.stderr[-3000:]
    outs = []
    for i in range(len(cases)):
        p = share / f"out_{i}.json"
        assert p.is_file(), f"case {i} wrote nothing:\n{r.stderr[-3000:]}"
        out = json.loads(p.read_text())
        assert "batch_error" not in out, out["batch_error"]
        outs.append(out)
    return outs


def test_restore_in_real_gimp3(gimp_ready, server, tmp_path):
    share = tmp_path
    written = installer.install("3", gimp3.plugin_dir(share))
    assert written[0].name == "oldphoto_restore.py" and written[0].stat().st_mode & 0o111
    dead = f"tcp://127.0.0.1:{free_port()}"

    cases, expect = [], []
    # 0: a PNG photo with a drawn-in scratch, feathered selection, only the selection changes
    W, H = 160, 120
    img0, scr0 = photo(H, W, 3, 0)
    Image.fromarray(img0).save(share / "photo_0.png")
    sel0 = scratch_selection(scr0, (H, W), (0, 0))
    cases.append(dict(png="photo_0.png", channels=3, canvas=[W, H], selection=True,
                      args={"server-address": server.address}))
    expect.append(("restrict", img0, sel0, sel0))
    # 1: RGBA layer larger than the canvas, offset up-left; restore the whole layer with the mask
    lw, lh, off = 150, 110, (-20, -12)
    img1, scr1 = photo(lh, lw, 4, 1)
    sel1 = scratch_selection(scr1, (96, 128), off)
    cases.append(dict(channels=4, canvas=[128, 96], layer_size=[lw, lh], offsets=list(off), selection=True,
                      args={"server-address": server.address, "restrict-to-selection": False}))
    expect.append(("full", img1, selection_in_layer(sel1, (lh, lw), off), sel1))
    # 2: gray layer smaller than the canvas, no selection: the whole layer, no mask
    img2, _ = photo(64, 90, 1, 2)
    cases.append(dict(channels=1, canvas=[128, 96], layer_size=[90, 64], offsets=[17, 9], selection=False,
                      args={"server-address": server.address}))
    expect.append(("full", img2, None, None))
    # 3: gray+alpha, offset into the canvas, selection partly outside the layer
    img3, scr3 = photo(70, 100, 2, 3)
    sel3 = scratch_selection(scr3, (96, 128), (40, 30))
    cases.append(dict(channels=2, canvas=[128, 96], layer_size=[100, 70], offsets=[40, 30], selection=True,
                      args={"server-address": server.address}))
    expect.append(("restrict", img3, selection_in_layer(sel3, (70, 100), (40, 30)), sel3))
    # 4: no server: an error status whose message says how to start it; nothing made
    cases.append(dict(channels=3, canvas=[64, 48], layer_size=[64, 48], offsets=[0, 0], selection=False,
                      args={"server-address": dead}))
    img4, _ = photo(48, 64, 3, 4)
    expect.append(("absent", img4, None, None))
    # 5: an indexed image: the procedure refuses it (the menu entry is greyed out)
    cases.append(dict(channels=3, canvas=[64, 48], layer_size=[64, 48], offsets=[0, 0], selection=False,
                      indexed=True, args={"server-address": server.address}))
    expect.append(("indexed", img4, None, None))
    # 6: the restore tuning as a script sets it (double arguments), only the selection changes
    img6, scr6 = photo(72, 96, 3, 6)
    sel6 = scratch_selection(scr6, (72, 96), (0, 0))
    cases.append(dict(channels=3, canvas=[96, 72], layer_size=[96, 72], offsets=[0, 0], selection=True,
                      args={"server-address": server.address, "tone": 1.0, "detail": 0.5}))
    expect.append(("restrict", img6, sel6, sel6))
    # 7: a 16-bit RGB image: the layer travels in 16 bits and the new layer holds them
    img7, scr7 = photo(60, 80, 3, 7)
    img7 = img7.astype(np.uint16) * 257 + np.random.default_rng(7).integers(0, 257, img7.shape).astype(np.uint16)
    sel7 = scratch_selection(scr7, (60, 80), (0, 0))
    cases.append(dict(channels=3, canvas=[80, 60], layer_size=[80, 60], offsets=[0, 0], selection=True,
                      deep=True, args={"server-address": server.address}))
    expect.append(("restrict", img7, sel7, sel7))

    for i, ((_, img, _m, sel), case) in enumerate(zip(expect, cases)):
        case["procedure"] = common.PROCEDURE
        if not case.get("png"):
            (share / f"photo_{i}.raw").write_bytes(img.tobytes())      # u16: the machine's order, as babl's
        if sel is not None:
            (share / f"selection_{i}.raw").write_bytes(sel.tobytes())

    outs = run_cases(share, cases)
    for i, (out, (kind, img, mask, sel), case) in enumerate(zip(outs, expect, cases)):
        assert out["registered"], "the plug-in did not register in GIMP 3"
        assert out["menu_paths"] == ["<Image>/Filters/Enhance"]
        # every option of the shared list is an argument, in its order, with its default and range
        args = {a[0]: a[1:] for a in out["arguments"]}
        names = [o[0].replace("_", "-") for o in common.OPTIONS]
        assert [a[0] for a in out["arguments"] if a[0] in names] == names, out["arguments"]
        for name, typ, default, _label, _desc in common.OPTIONS:
            got, lo_hi = args[name.replace("_", "-")], list(common.RANGES.get(name, (None, None))[:2])
            assert [(got[0] or "") if typ is str else got[0]] + got[1:] == [default] + lo_hi, (name, got)
        if sel is not None:
            back = np.frombuffer((share / f"selection_readback_{i}.raw").read_bytes(), np.uint8)
            assert np.array_equal(back.reshape(sel.shape), sel), f"case {i}: test set-up: selection differs"
        if kind in ("absent", "indexed"):
            assert out["status"] != "success", out
            assert "new" not in out and out["n_layers_before"] == len(out["layer_names"]), out
            assert out["original_unchanged"] and not out["dirty"], out
            if kind == "absent":
                assert out["status"] == "execution-error", out
                assert "python -m server" in out["error"] and dead in out["error"], out["error"]
                assert out["seconds"] < 3.0, f"no-server message took {out['seconds']:.1f} s"
            continue
        assert out["status"] == "success", f"case {i}: {out}"
        assert out["original_unchanged"], f"case {i}: the original layer changed"
        new = out["new"]
        assert new["name"].endswith("(restored)")
        assert new["position"] + 1 == new["active_position"], "the new layer is not right above the original"
        assert new["offsets"] == out["original_offsets"] and new["size"] == out["original_size"]
        assert len(out["layer_names"]) == out["n_layers_before"] + 1
        h, w = img.shape[:2]
        got = np.frombuffer((share / f"new_{i}.raw").read_bytes(), img.dtype).reshape(img.shape)
        if kind == "restrict":
            from server.client import crop_plan
            ys, xs = np.nonzero(mask)
            region = crop_plan(w, h, (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
            tuning = {k.replace("-", "_"): v for k, v in case["args"].items()
                      if k.replace("-", "_") in common.SERVER_OPTIONS}
            want = reference(server.weights, img, mask, True, region, options=tuning)
            if tuning:
                assert not np.array_equal(want, reference(server.weights, img, mask, True, region)), \
                    f"case {i}: the tuning makes no difference here"
            assert np.array_equal(got[mask == 0], img[mask == 0]), f"case {i}: pixels outside the selection changed"
        else:
            want = reference(server.weights, img, mask)
        assert np.array_equal(got, want), (
            f"case {i}: new layer differs from the server's result at {int((got != want).sum())} values")
        assert not np.array_equal(got, img), f"case {i}: nothing was restored"
        if case.get("deep"):      # the restored pixels are 16-bit values, not 8-bit ones scaled up
            assert np.count_nonzero(got[mask > 0] % 257) > 0.5 * np.count_nonzero(mask), f"case {i}"


def test_missing_pyzmq_in_real_gimp3(gimp_ready, tmp_path):
    """GIMP's Python without pyzmq: the menu entry still registers, and running it
    says which Python lacks it and what to run."""
    share = tmp_path
    installer.install("3", gimp3.plugin_dir(share))
    (share / "nozmq").mkdir()
    (share / "nozmq" / "zmq.py").write_text("raise ImportError('No module named zmq (hidden by the test)')\n")
    img, _ = photo(32, 48, 3, 5)
    (share / "photo_0.raw").write_bytes(img.tobytes())
    case = dict(channels=3, canvas=[48, 32], layer_size=[48, 32], offsets=[0, 0], selection=False,
                procedure=common.PROCEDURE, args={"server-address": "tcp://127.0.0.1:5587"})
    out, = run_cases(share, [case], env={"PYTHONPATH": gimp3.INSIDE + "/nozmq"})
    assert out["registered"] and out["menu_paths"] == ["<Image>/Filters/Enhance"]
    assert out["status"] == "execution-error", out
    assert "/usr/bin/python3" in out["error"] and "-m pip install pyzmq msgpack" in out["error"], out["error"]
    assert "No module named zmq" in out["error"]
    assert "new" not in out and out["original_unchanged"] and not out["dirty"]


@pytest.fixture(scope="module")
def curve_server(tmp_path_factory):
    """The shipped model behind a loopback bind that still requires CURVE (--curve on),
    as a server on another machine would; (server, its public key)."""
    pytest.importorskip("server.cli", reason="the server package is not importable")
    from oldphoto_model import default_weights_path
    from server.client import server_key_from
    from server.keys import server_keypair
    keys = tmp_path_factory.mktemp("curve")
    public, _ = server_keypair(str(keys))        # what the server would make on first start
    srv = ServerProcess(default_weights_path(), extra_args=["--curve", "on", "--key-dir", str(keys)],
                        server_key=public).start()
    yield srv, server_key_from(str(keys / "server.key"))
    srv.stop()


def test_curve_in_real_gimp3(gimp_ready, curve_server, tmp_path):
    """The real GIMP 3 plug-in against a CURVE server: with its public key in the
    'Server public key' setting it restores; with a wrong or no key it fails fast
    with a message about the key, and the image is left as it was."""
    srv, key = curve_server
    assert key in srv.output()                    # the server printed it at start-up
    share = tmp_path
    installer.install("3", gimp3.plugin_dir(share))
    wrong = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    assert wrong != key
    img, _ = photo(48, 64, 3, 7)
    cases = []
    for i, k in enumerate([key, wrong, ""]):
        (share / f"photo_{i}.raw").write_bytes(img.tobytes())
        cases.append(dict(channels=3, canvas=[64, 48], layer_size=[64, 48], offsets=[0, 0], selection=False,
                          procedure=common.PROCEDURE, args={"server-address": srv.address, "server-key": k}))
    right, bad, missing = run_cases(share, cases)
    for out in (right, bad, missing):
        assert out["registered"], "the plug-in did not register in GIMP 3"
    print(f"[gimp3] CURVE: right key {right['seconds']:.1f} s, wrong key {bad['seconds']:.1f} s, "
          f"no key {missing['seconds']:.1f} s")

    assert right["status"] == "success", right
    assert right["original_unchanged"] and right["new"]["name"].endswith("(restored)")
    assert len(right["layer_names"]) == right["n_layers_before"] + 1
    got = np.frombuffer((share / "new_0.raw").read_bytes(), np.uint8).reshape(img.shape)
    assert not np.array_equal(got, img), "nothing was restored"
    want = reference(srv.weights, img)
    assert np.array_equal(got, want), f"new layer differs from the server's result at {int((got != want).sum())} values"

    for out, words in ((bad, "public key is wrong"), (missing, "requires encryption")):
        assert out["status"] == "execution-error", out
        assert words in out["error"] and srv.address in out["error"], out["error"]
        assert "new" not in out and out["n_layers_before"] == len(out["layer_names"]), out
        assert out["original_unchanged"] and not out["dirty"], out
        assert out["seconds"] < 15.0, f"the key error took {out['seconds']:.1f} s"
    assert srv.alive(), "the server died on a bad handshake:\n" + srv.output()[-1500:]


def test_select_scratches_in_real_gimp3(gimp_ready, det_server, tmp_path):
    """Filters > Enhance > Select Scratches in a real GIMP 3: the detected mask becomes the
    selection (at the layer's offsets, clipped to the canvas), the layer and the layer stack
    are unchanged, no channel is left behind, no undo group is left open; a server without
    detection is an error that says so. And Restore Old Photo with "find scratches" ticked and
    nothing selected restores with the detected mask."""
    from oldphoto_model.detect import DETECT_GROW, detect, load_detector
    share = tmp_path
    installer.install("3", gimp3.plugin_dir(share))
    blind = ServerProcess(det_server.weights, detector="none").start()
    try:
        det = load_detector(str(det_server.detector))
        img0, _ = photo(60, 80, 3, 20)                        # 0: RGB, offset, partly off-canvas
        img1, _ = photo(48, 64, 1, 21)                        # 1: gray, aligned
        img2, _ = photo(48, 64, 3, 22)                        # 2: a server without detection
        img3, _ = photo(48, 64, 3, 23)                        # 3: restore with detect-scratches
        sel = np.zeros((48, 64), np.uint8)
        sel[5:9, 10:30] = 255
        cases = [
            dict(channels=3, canvas=[72, 56], layer_size=[80, 60], offsets=[-5, 4], selection=False,
                 procedure=common.SELECT_PROCEDURE, args={"server-address": det_server.address}),
            dict(channels=1, canvas=[64, 48], layer_size=[64, 48], offsets=[0, 0], selection=True,
                 procedure=common.SELECT_PROCEDURE, args={"server-address": det_server.address}),
            dict(channels=3, canvas=[64, 48], layer_size=[64, 48], offsets=[0, 0], selection=True,
                 procedure=common.SELECT_PROCEDURE, args={"server-address": blind.address}),
            dict(channels=3, canvas=[64, 48], layer_size=[64, 48], offsets=[0, 0], selection=False,
                 procedure=common.PROCEDURE, args={"server-address": det_server.address,
                                                   "detect-scratches": True}),
        ]
        for i, im in enumerate((img0, img1, img2, img3)):
            (share / f"photo_{i}.raw").write_bytes(im.tobytes())
        for i in (1, 2):
            (share / f"selection_{i}.raw").write_bytes(sel.tobytes())
        outs = run_cases(share, cases)
    finally:
        blind.stop()
    for i, out in enumerate(outs[:3]):
        assert out["registered"], "Select Scratches did not register in GIMP 3"
        assert out["menu_paths"] == ["<Image>/Filters/Enhance"] and out["menu_label"] == "Select Scratches\u2026"
        assert [a[0] for a in out["arguments"] if a[0].startswith("server")] == ["server-address", "server-key"]
        assert out["original_unchanged"] and "new" not in out and out["n_layers_before"] == len(out["layer_names"])
        assert out["n_channels"] == 0, "a temporary channel was left in the image"

    def selection(i, shape):
        return np.frombuffer((share / f"selection_after_{i}.raw").read_bytes(), np.uint8).reshape(shape)

    for i, (img, canvas, offsets) in enumerate(((img0, (56, 72), (-5, 4)), (img1, (48, 64), (0, 0)))):
        out = outs[i]
        assert out["status"] == "success", out
        mask = detect(img, det)[1]
        assert 0 < (mask > 0).mean() < 1
        want = np.zeros(canvas, np.uint8)
        ox, oy = offsets
        h, w = mask.shape
        x0, y0, x1, y1 = max(0, ox), max(0, oy), min(canvas[1], ox + w), min(canvas[0], oy + h)
        want[y0:y1, x0:x1] = mask[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        got = selection(i, canvas)
        assert np.array_equal(got, want), f"case {i}: the selection differs at {int((got != want).sum())} pixels"
        assert out["dirty"], "the selection change is not an undoable change of the image"
    out = outs[2]
    assert out["status"] == "execution-error" and "cannot find scratches" in out["error"], out
    assert blind.address in out["error"] and np.array_equal(selection(2, (48, 64)), sel) and not out["dirty"]
    out = outs[3]
    assert out["status"] == "success", out
    got = np.frombuffer((share / "new_3.raw").read_bytes(), np.uint8).reshape(img3.shape)
    want = reference(det_server.weights, img3, detect(img3, det)[1], options={"grow": DETECT_GROW})
    assert np.array_equal(got, want), f"differs from the restore with the detected mask at {int((got != want).sum())}"
    assert not np.array_equal(got, reference(det_server.weights, img3)), "the detected mask made no difference"
