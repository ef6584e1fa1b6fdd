"""The shared plug-in logic (gimp_plugin/common/oldphoto_common.py) on its own."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from gimp_plugin.common import oldphoto_common as common

ROOT = Path(__file__).resolve().parents[2]


def test_default_address_matches_client():
    from server import client
    assert common.DEFAULT_ADDRESS == client.DEFAULT_ADDRESS
    assert common.DEFAULTS["server_address"] == client.DEFAULT_ADDRESS


@pytest.mark.parametrize("c", [1, 2, 3, 4])
def test_crop_and_paste_match_numpy(c):
    rng = np.random.default_rng(c)
    a = rng.integers(0, 255, (13, 17, c), dtype=np.uint8)
    got = common.crop(a.tobytes(), 17, c, 3, 4, 9, 6)
    assert got == a[4:10, 3:12].tobytes()
    dst = bytearray(a.tobytes())
    block = rng.integers(0, 255, (6, 9, c), dtype=np.uint8)
    common.paste(dst, 17, c, 3, 4, 9, 6, block.tobytes())
    b = a.copy()
    b[4:10, 3:12] = block
    assert bytes(dst) == b.tobytes()


def test_mask_bbox():
    m = np.zeros((20, 30), np.uint8)
    assert common.mask_bbox(m.tobytes(), 30, 20) is None
    m[5, 7] = 1
    m[11, 21] = 200
    assert common.mask_bbox(m.tobytes(), 30, 20) == (7, 5, 15, 7)


def test_options_defaults_and_types():
    o = common.options_from({"use_selection": 0, "server_address": "  ", "restrict_to_selection": None})
    assert o == dict(common.DEFAULTS, use_selection=False)
    assert common.options_from({"server_address": "ipc:///tmp/x"})["server_address"] == "ipc:///tmp/x"


class _Host(common.Host):
    def __init__(self, w, h, c, pixels, mask):
        self.width, self.height, self.channels, self.name = w, h, c, "p"
        self._p, self._m = pixels, mask

    def read_pixels(self, sample_bytes=1):
        return self._p

    def selection_mask(self):
        return self._m


def test_request_planning():
    from server.client import crop_plan
    w, h = 400, 300
    m = np.zeros((h, w), np.uint8)
    m[200:204, 300:320] = 255
    host = _Host(w, h, 3, bytes(w * h * 3), m.tobytes())
    _, mask, region, opts = common.request_for(host, {}, crop_plan)
    assert opts == {"restrict_to_mask": True} and mask == m.tobytes()
    assert region == crop_plan(w, h, (300, 200, 20, 4)) and region != (0, 0, w, h)
    _, mask, region, opts = common.request_for(host, {"restrict_to_selection": False}, crop_plan)
    assert region == (0, 0, w, h) and opts == {} and mask is not None
    _, mask, region, opts = common.request_for(host, {"use_selection": False}, crop_plan)
    assert mask is None and region == (0, 0, w, h) and opts == {}
    outside = _Host(w, h, 3, bytes(w * h * 3), bytes(w * h))
    with pytest.raises(common.PluginError):
        common.request_for(outside, {}, crop_plan)
    nosel = _Host(w, h, 3, bytes(w * h * 3), None)
    assert common.request_for(nosel, {"detect_scratches": True}, crop_plan)[3] == {"detect_scratches": True}
    with pytest.raises(common.PluginError):
        common.request_for(_Host(w, h, 3, bytes(5), None), {}, crop_plan)


def test_detection_offered():
    assert common.detection_offered({"detection": {"available": True, "threshold": 0.99}})
    assert not common.detection_offered({"detection": {"available": False, "reason": "no file"}})
    assert not common.detection_offered({"options": {"detect_scratches": {}}})   # a protocol-1 server
    assert not common.detection_offered({"detection": {"available": "yes"}})
    assert not common.detection_offered(None)


def test_missing_client_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "oldphoto_client", None)
    with pytest.raises(common.PluginError) as e:
        common.import_client()
    assert e.value.kind == "missing-modules"
    assert sys.executable in e.value.message and "-m pip install pyzmq msgpack" in e.value.message


def test_error_mapping():
    from server import client as cm
    addr = "tcp://127.0.0.1:9"
    e = common.describe_error(cm.ServerUnavailable(addr), cm, addr)
    assert e.kind == "unavailable" and addr in e.message and "python -m server" in e.message
    # the hint starts a server at the address that was asked for, in the project's Python
    assert f"python -m server --bind {addr}" in e.message and "Python in which" in e.message
    default = common.describe_error(cm.ServerUnavailable(common.DEFAULT_ADDRESS), cm, common.DEFAULT_ADDRESS)
    assert "  python -m server\n" in default.message
    for exc in (cm.ServerUnavailable(addr), cm.ServerError("internal", "run `python -m server info`"),
                cm.ClientError("timeout", "no reply from `x`"), ValueError("`y`")):
        assert "`" not in common.describe_error(exc, cm, addr).message   # GIMP shows no Markdown
    e = common.describe_error(cm.ServerError("too_large", "image too big"), cm, addr)
    assert e.kind == "error" and "image too big" in e.message
    assert common.describe_error(cm.Cancelled(), cm, addr).kind == "cancelled"
    assert "ValueError" in common.describe_error(ValueError("x"), cm, addr).message


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            (top if node in tree.body else inner).update(n.split(".")[0] for n in names)
    return top, inner


def test_plugins_import_third_party_only_inside_run():
    """A failing import at start-up removes the menu entry: only the standard library,
    the host's own modules and oldphoto_common at module level."""
    allowed = set(sys.stdlib_module_names) | {"gi", "gimpfu", "oldphoto_common", "__future__"}
    for p in (ROOT / "gimp_plugin/gimp3/oldphoto_restore/oldphoto_restore.py",
              ROOT / "gimp_plugin/gimp2/oldphoto_restore.py",
              ROOT / "gimp_plugin/common/oldphoto_common.py"):
        top, _ = _imports(p)
        assert top <= allowed, f"{p.name} imports {top - allowed} at module level"


def test_gimp_plugin_never_imports_torch():
    for p in (ROOT / "gimp_plugin").rglob("*.py"):
        if "testing" in p.parts:
            continue   # test support computes reference results with the model
        top, inner = _imports(p)
        assert not ({"torch", "oldphoto_model"} & (top | inner)), p


def test_gimp3_plugin_is_thin():
    """Host glue only: no protocol or planning logic duplicated from the common module."""
    src = (ROOT / "gimp_plugin/gimp3/oldphoto_restore/oldphoto_restore.py").read_text()
    for word in ("crop_plan", "restrict_to_mask", "Client(", "zmq", "msgpack"):
        assert word not in src
    src2 = (ROOT / "gimp_plugin/gimp2/oldphoto_restore.py").read_text()
    for word in ("crop_plan", "restrict_to_mask", "Client(", "zmq", "msgpack"):
        assert word not in src2


def test_layer_name_never_doubles():
    assert common.layer_name("photo") == "photo (restored)"
    assert common.layer_name("photo (restored)") == "photo (restored 2)"
    assert common.layer_name("photo (restored 2)") == "photo (restored 3)"
    assert common.layer_name(common.layer_name(common.layer_name("x"))) == "x (restored 3)"
    assert common.layer_name("") == "Layer (restored)"


def test_progress_words_cover_every_stage_the_server_reports():
    """The stage names come from the real pipeline (plus the worker's and client's own)."""
    import torch

    from oldphoto_model import MappingConfig, ModelConfig, RestorationModel, Restorer, VAEConfig
    torch.manual_seed(0)
    model = RestorationModel(ModelConfig(vae=VAEConfig(channels=8), mapping=MappingConfig(latent_channels=8, width=16)))
    stages = set()
    mask = np.zeros((32, 32), np.uint8)
    mask[10:12] = 255
    Restorer(model, "cpu", "fp32").restore(np.zeros((32, 32, 3), np.uint8), mask, progress=lambda f, s: stages.add(s))
    stages |= {"queued", "start", "low-memory retry"}
    assert stages <= set(common.STAGE_WORDS), stages - set(common.STAGE_WORDS)
    for stage in stages:
        text = common.progress_text(stage)
        assert text.startswith("Restoring: ") and not {"encode", "decode", "map", "tail"} & set(text.split())
    assert common.progress_text("some-new-stage") == "Restoring: some new stage..."


@pytest.mark.parametrize("has_selection", [True, False])
@pytest.mark.parametrize("use", [True, False])
@pytest.mark.parametrize("restrict", [True, False])
def test_mode_text_says_what_the_request_does(has_selection, use, restrict):
    """The dialog's sentence and what is sent agree, for every combination of the boxes."""
    from server.client import crop_plan
    w, h = 64, 48
    m = np.zeros((h, w), np.uint8)
    m[20:22, 10:50] = 255
    host = _Host(w, h, 3, bytes(w * h * 3), m.tobytes() if has_selection else None)
    opts = {"use_selection": use, "restrict_to_selection": restrict}
    _, mask, _, server_opts = common.request_for(host, opts, crop_plan)
    text = common.mode_text(opts, has_selection)
    assert ("only the selected area changes" in text) == bool(server_opts.get("restrict_to_mask"))
    assert ("whole layer is restored" in text) == (not server_opts.get("restrict_to_mask"))
    assert ("no scratches are inpainted" in text) == (mask is None)


def test_option_texts_agree():
    """The restrict box names what it depends on; the tooltip says what happens without it."""
    opt = dict((o[0], o) for o in common.OPTIONS)
    assert "scratch" in opt["restrict_to_selection"][3].lower()
    assert "scratch mask" in opt["restrict_to_selection"][4] and "whole layer" in opt["restrict_to_selection"][4]
    assert "whole layer" in opt["use_selection"][4]


def test_server_status_for_the_dialog(server, monkeypatch):
    from server import client
    monkeypatch.setitem(sys.modules, "oldphoto_client", client)   # as installed beside the plug-in
    ok, detection, line = common.server_status(server.address)       # it has the shipped detector
    assert ok and detection is True and line == f"Server: ready at {server.address} (cpu)."
    assert "detect_scratches" in common.dialog_options(server.address, status=(ok, detection, line))
    from gimp_plugin.testing.server_process import free_port
    dead = f"tcp://127.0.0.1:{free_port()}"
    ok, detection, line = common.server_status(dead, timeout=0.3)
    assert not ok and f"no answer at {dead}" in line and f"--bind {dead}" in line
    assert common.dialog_options(dead, status=(ok, detection, line)) == [
        "use_selection", "restrict_to_selection", "grow", "match_tone", "detail", "tone", "sharpen",
        "black_point", "auto_tone", "server_address", "server_key"]
    ok, _, line = common.server_status("localhost:5587")
    assert not ok and "the address cannot work" in line and "did you mean tcp://localhost:5587" in line


def test_restore_tuning_is_the_model_s():
    """The plug-in cannot import oldphoto_model (no torch in GIMP's Python): its defaults,
    types and ranges for the restore options must be RestoreOptions' and the protocol's."""
    from oldphoto_model import InputError, RestoreOptions
    from server.protocol import OPTIONS as PROTOCOL_OPTIONS
    opt = dict((o[0], o) for o in common.OPTIONS)
    # every restore option of the protocol is offered, except the mask's threshold (the
    # server's stays), restrict_to_mask (set from "only change the selected scratches") and
    # learned_fill (no learned-fill file ships yet, docs/MODEL.md "Learned fill": the
    # server's default stands until one does)
    assert sorted(common.SERVER_OPTIONS) == sorted(set(PROTOCOL_OPTIONS) - {"mask_threshold", "restrict_to_mask",
                                                                            "learned_fill"})
    assert sorted(common.RANGES) == sorted(n for n in common.SERVER_OPTIONS if opt[n][1] in (int, float))
    for name in common.SERVER_OPTIONS:
        typ, default, _help = PROTOCOL_OPTIONS[name]
        assert opt[name][1] is typ and opt[name][2] == default == getattr(RestoreOptions(), name), name
    for name, (lo, hi, step) in common.RANGES.items():
        RestoreOptions(**{name: lo})
        RestoreOptions(**{name: hi})
        for beyond in (lo - step, hi + step):
            with pytest.raises(InputError):
                RestoreOptions(**{name: beyond})
        assert lo <= common.DEFAULTS[name] <= hi
    assert sorted(common.DIALOG_ORDER) == sorted(opt)


def test_plugin_doc_gives_the_restore_tuning_defaults():
    """docs/PLUGIN.md's options table gives each restore setting's default as the plug-in
    has it (and so the model's, see above)."""
    doc = (ROOT / "docs" / "PLUGIN.md").read_text()
    rows = dict(re.findall(r"^\| `([\w-]+)`[^|]*\| `?([^|`]+?)`? \|", doc, re.M))
    for name in common.SERVER_OPTIONS:
        typ, default = type(common.DEFAULTS[name]), common.DEFAULTS[name]
        cell = rows[name.replace("_", "-")]
        assert (cell == ("on" if default else "off")) if typ is bool else (typ(cell) == default), (name, cell)


def test_restore_tuning_sent_only_when_changed():
    from server.client import crop_plan
    host = _Host(16, 8, 3, bytes(16 * 8 * 3), None)
    assert common.request_for(host, {}, crop_plan)[3] == {}
    changed = {"grow": 4, "match_tone": False, "detail": 0.25, "tone": 0.75, "sharpen": 1.5, "black_point": 0.0,
               "auto_tone": 0.5}
    assert common.request_for(host, changed, crop_plan)[3] == changed
    assert common.options_from({"grow": 2.0, "detail": 1})["grow"] == 2        # gimpfu spinners
    for bad in ({"grow": 65}, {"grow": -1}, {"detail": 1.01}, {"detail": "much"}, {"tone": -0.05}, {"tone": 1.5},
                {"sharpen": 2.5}, {"black_point": 1.5}, {"auto_tone": -0.1}):
        with pytest.raises(common.PluginError) as e:
            common.options_from(bad)
        assert e.value.kind == "input" and dict((o[0], o[3]) for o in common.OPTIONS)[list(bad)[0]] in e.value.message


class _DeepHost(_Host):
    """A 16-bit layer: u16 little-endian samples, or u8 when asked for 8 bits."""
    sample_bytes = 2

    def __init__(self, img16, mask):
        h, w, c = img16.shape
        _Host.__init__(self, w, h, c, None, mask)
        self.img16, self.added = img16, None

    def read_pixels(self, sample_bytes=1):
        if sample_bytes == 2:
            return self.img16.astype("<u2").tobytes()
        return np.rint(self.img16 / 257.0).astype(np.uint8).tobytes()

    def add_layer(self, name, pixels, sample_bytes=1):
        self.added = (pixels, sample_bytes)


@pytest.mark.parametrize("server_takes_u16", [True, False])
def test_16_bit_layers_travel_in_16_bits(server, monkeypatch, server_takes_u16):
    """A 16-bit layer goes to the server as u16 and the new layer gets 16-bit pixels; a
    server that takes 8 bits only gets (and gives back) 8 bits."""
    from gimp_plugin.testing.server_process import reference
    from server import client
    monkeypatch.setitem(sys.modules, "oldphoto_client", client)
    if not server_takes_u16:
        monkeypatch.setattr(client.Client, "supports_dtype", lambda self, d: d == "u8")
    rng = np.random.default_rng(9)
    img = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    host = _DeepHost(img, None)
    common.run(host, {"server_address": server.address})
    pixels, size = host.added
    if server_takes_u16:
        assert size == 2
        got = np.frombuffer(pixels, "<u2").reshape(img.shape)
        np.testing.assert_array_equal(got, reference(server.weights, img))
        assert np.count_nonzero(got % 257) > got.size // 2
    else:
        eight = np.rint(img / 257.0).astype(np.uint8)
        assert size == 1
        np.testing.assert_array_equal(np.frombuffer(pixels, np.uint8).reshape(img.shape),
                                      reference(server.weights, eight))
