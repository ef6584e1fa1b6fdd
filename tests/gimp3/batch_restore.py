# Batch code run inside a real GIMP 3 (python-fu-eval) by test_gimp3_e2e.py.
# For each case of /mnt/oldphoto/spec.json: build or load the photo, select the
# scratch, call the plug-in's procedure non-interactively, and record what is
# found in /mnt/oldphoto/out_N.json (+ raw pixels of the new layer in new_N.raw,
# the selection afterwards in selection_after_N.raw).
# One GIMP start serves every case (starting GIMP costs seconds).
import json
import time
import traceback

from gi.repository import Gegl, Gimp, Gio

D = "/mnt/oldphoto/"
FORMATS = {1: "Y' u8", 2: "Y'A u8", 3: "R'G'B' u8", 4: "R'G'B'A u8"}
FORMATS16 = {c: f.replace("u8", "u16") for c, f in FORMATS.items()}
TYPES = {1: Gimp.ImageType.GRAY_IMAGE, 2: Gimp.ImageType.GRAYA_IMAGE,
         3: Gimp.ImageType.RGB_IMAGE, 4: Gimp.ImageType.RGBA_IMAGE}
pdb = Gimp.get_pdb()


def read(drawable, fmt):
    w, h = drawable.get_width(), drawable.get_height()
    return bytes(drawable.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt,
                                           Gegl.AbyssPolicy.NONE))


def plain(value):
    """A parameter's default or bound as JSON can hold it (None for objects)."""
    return value if isinstance(value, (bool, int, float, str)) else None


def build(case, i):
    c = case["channels"]
    W, H = case["canvas"]
    if case.get("png"):
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(D + case["png"]))
        layer = image.get_layers()[0]
    else:
        image = Gimp.Image.new(W, H, Gimp.ImageBaseType.GRAY if c <= 2 else Gimp.ImageBaseType.RGB)
        if case.get("deep"):    # a 16-bit image (a scan kept in 16 bits)
            image.convert_precision(Gimp.Precision.U16_NON_LINEAR)
        # a background below, so "above the active layer" is observable
        bg = Gimp.Layer.new(image, "background", W, H, TYPES[1 if c <= 2 else 3], 100.0,
                            Gimp.LayerMode.NORMAL)
        image.insert_layer(bg, None, 0)
        lw, lh = case["layer_size"]
        layer = Gimp.Layer.new(image, "photo", lw, lh, TYPES[c], 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, 0)
        layer.set_offsets(*case["offsets"])
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, lw, lh), (FORMATS16 if case.get("deep") else FORMATS)[c],
                list(open(D + "photo_%d.raw" % i, "rb").read()))
        buf.flush()
    if case.get("indexed"):
        image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16,
                              False, False, "")
    if case.get("selection"):
        sel = Gimp.Channel.new(image, "scratch", W, H, 100.0, Gegl.Color.new("black"))
        image.insert_channel(sel, None, 0)
        sb = sel.get_buffer()
        # channels of 8-bit perceptual images store Y'; select_item copies the raw values
        # into the (linear "Y u8") selection; the test checks this read-back
        # (channels of 16-bit images store linear Y: written as such, the values go in unchanged)
        sb.set(Gegl.Rectangle.new(0, 0, W, H), "Y u8" if case.get("deep") else "Y' u8",
               list(open(D + "selection_%d.raw" % i, "rb").read()))
        sb.flush()
        image.select_item(Gimp.ChannelOps.REPLACE, sel)
        image.remove_channel(sel)
        open(D + "selection_readback_%d.raw" % i, "wb").write(bytes(image.get_selection().get_buffer().get(
            Gegl.Rectangle.new(0, 0, W, H), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
    image.set_selected_layers([layer])
    image.clean_all()
    return image, layer


def run_case(case, i):
    out = {}
    image, layer = build(case, i)
    fmt = ((FORMATS16 if case.get("deep") else FORMATS)[case["channels"]] if not case.get("indexed")
           else "R'G'B'A u8")
    original = read(layer, fmt)
    open(D + "original_%d.raw" % i, "wb").write(original)
    before = [l.get_id() for l in image.get_layers()]
    proc = pdb.lookup_procedure(case["procedure"])
    out["registered"] = proc is not None
    if proc is None:
        return out
    out["menu_paths"] = list(proc.get_menu_paths())
    out["menu_label"] = proc.get_menu_label()
    out["image_types"] = proc.get_image_types()
    out["arguments"] = [[a.name] + [plain(getattr(a, f, None)) for f in ("default_value", "minimum", "maximum")]
                        for a in proc.get_arguments()]
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [layer])
    for k, v in case["args"].items():
        cfg.set_property(k, v)
    t = time.time()
    result = proc.run(cfg)
    out["seconds"] = time.time() - t
    out["status"] = result.index(0).value_nick
    out["error"] = pdb.get_last_error()
    layers = image.get_layers()
    out["n_layers_before"] = len(before)
    out["layer_names"] = [l.get_name() for l in layers]
    out["original_unchanged"] = read(layer, fmt) == original
    out["original_offsets"] = list(layer.get_offsets()[-2:])
    out["original_size"] = [layer.get_width(), layer.get_height()]
    out["dirty"] = image.is_dirty()
    out["n_channels"] = len(image.get_channels())
    out["selection_empty"] = Gimp.Selection.is_empty(image)
    W, H = image.get_width(), image.get_height()
    open(D + "selection_after_%d.raw" % i, "wb").write(bytes(image.get_selection().get_buffer().get(
        Gegl.Rectangle.new(0, 0, W, H), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)))
    new = [l for l in layers if l.get_id() not in before]
    if new:
        n = new[0]
        out["new"] = {"name": n.get_name(), "offsets": list(n.get_offsets()[-2:]),
                      "size": [n.get_width(), n.get_height()],
                      "position": image.get_item_position(n),
                      "active_position": image.get_item_position(layer)}
        open(D + "new_%d.raw" % i, "wb").write(read(n, fmt))
    return out


spec = json.load(open(D + "spec.json"))
for i, case in enumerate(spec["cases"]):
    try:
        out = run_case(case, i)
    except Exception:
        out = {"batch_error": traceback.format_exc()}
    json.dump(out, open(D + "out_%d.json" % i, "w"))
