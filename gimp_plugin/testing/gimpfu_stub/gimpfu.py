"""Stub of GIMP 2.10's ``gimpfu`` (see README.md): register/main, PF_* parameter
types, run modes, constants, and ``pdb`` with the procedures the plug-in uses."""
from __future__ import absolute_import, division, print_function

import re

import gimp
from gimp import (
    CHANNEL_OP_ADD,
    CHANNEL_OP_INTERSECT,
    CHANNEL_OP_REPLACE,
    CHANNEL_OP_SUBTRACT,
    GRAY,
    GRAY_IMAGE,
    GRAYA_IMAGE,
    INDEXED,
    INDEXED_IMAGE,
    INDEXEDA_IMAGE,
    RGB,
    RGB_IMAGE,
    RGBA_IMAGE,
)

RUN_INTERACTIVE, RUN_NONINTERACTIVE, RUN_WITH_LAST_VALS = 0, 1, 2
NORMAL_MODE = 0
PDB_SUCCESS, PDB_EXECUTION_ERROR, PDB_CALLING_ERROR, PDB_CANCEL = "success", "execution-error", "calling-error", "cancel"

(PF_INT32, PF_FLOAT, PF_STRING, PF_IMAGE, PF_LAYER, PF_CHANNEL, PF_DRAWABLE, PF_TOGGLE,
 PF_BOOL, PF_SLIDER, PF_SPINNER) = ("int32", "float", "string", "image", "layer", "channel", "drawable",
                                    "toggle", "toggle", "slider", "spinner")
# as in gimpfu: a slider is a PDB float, a spinner a PDB int32; both need (min, max, step)
_PF_TYPES = {PF_INT32: int, PF_FLOAT: float, PF_STRING: str, PF_IMAGE: gimp.Image,
             PF_LAYER: gimp.Layer, PF_CHANNEL: gimp.Channel, PF_DRAWABLE: gimp.Drawable, PF_TOGGLE: bool,
             PF_SLIDER: float, PF_SPINNER: int}
_RANGED = (PF_SLIDER, PF_SPINNER)

_registered = {}  # type: dict
_shelf = {}  # type: dict  # last values per procedure (gimpfu keeps them with gimp_set_data)
state = {"main_called": False}


class CallingError(Exception):
    pass


def register(proc_name, blurb, help, author, copyright, date, label, imagetypes, params,
             results, function, menu=None, domain=None, on_query=None, on_run=None):
    """Validate and record a procedure, as gimpfu.register does."""
    for p in params:
        if len(p) < 4:
            raise CallingError("parameter definition must contain at least 4 elements (%s given: %r)" % (len(p), p))
        if p[0] not in _PF_TYPES:
            raise CallingError("parameter types must be PF_* constants: %r" % (p,))
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", p[1]):
            raise CallingError("parameter name contains illegal characters: %r" % p[1])
        if p[0] in _RANGED:   # gimpfu's dialog builds the widget from (min, max, step)
            if len(p) < 5 or len(p[4]) != 3 or not all(isinstance(v, (int, float)) for v in p[4]):
                raise CallingError("%s needs (min, max, step) as its 5th element: %r" % (p[0], p))
            if not p[4][0] <= p[3] <= p[4][1]:
                raise CallingError("default of %s is outside (min, max): %r" % (p[1], p))
    if not callable(function):
        raise CallingError("function is not callable")
    if menu is not None and not menu.startswith("<"):
        raise CallingError("menu must start with <Image>, <Toolbox>, ...")
    if menu is not None and menu.startswith("<Image>"):
        kinds = [p[0] for p in params[:2]]
        if kinds != [PF_IMAGE, PF_DRAWABLE]:
            raise CallingError("<Image> procedures take PF_IMAGE, PF_DRAWABLE first")
    if not proc_name.startswith(("python-", "python_", "script-fu-", "plug-in-", "file-", "extension-")):
        proc_name = "python-fu-" + proc_name
    _registered[proc_name] = dict(blurb=blurb, help=help, author=author, copyright=copyright,
                                  date=date, label=label, imagetypes=imagetypes, params=list(params),
                                  results=list(results), function=function, menu=menu)


def main():
    state["main_called"] = True


def procedures():
    """Test helper: what was registered."""
    return dict(_registered)


def _reset():
    _registered.clear()
    _shelf.clear()
    state["main_called"] = False


def _type_ok(imagetypes, drawable):
    kinds = []
    for t in [t.strip() for t in imagetypes.split(",")]:
        base = t.rstrip("*")
        alpha_ok = t.endswith("*")
        kinds.append((base, alpha_ok, t.endswith("A")))
    name = {gimp.RGB_IMAGE: "RGB", gimp.RGBA_IMAGE: "RGBA", gimp.GRAY_IMAGE: "GRAY",
            gimp.GRAYA_IMAGE: "GRAYA", gimp.INDEXED_IMAGE: "INDEXED", gimp.INDEXEDA_IMAGE: "INDEXEDA"}[drawable.type]
    for base, star, _ in kinds:
        if name == base or (star and name in (base, base + "A")):
            return True
    return False


def run_procedure(proc_name, run_mode, *args):
    """Call a registered procedure as GIMP would: returns (status, error message).
    Interactive runs take the dialog's values: the last values, or the defaults."""
    proc = _registered[proc_name]
    params = proc["params"]
    image, drawable = args[0], args[1]
    if proc["menu"] and not _type_ok(proc["imagetypes"], drawable):
        # GIMP greys the menu entry out: the procedure cannot be run on this drawable
        return PDB_CALLING_ERROR, "procedure is not available for this image type"
    if run_mode == RUN_NONINTERACTIVE:
        if len(args) != len(params):
            return PDB_CALLING_ERROR, "wrong number of parameters"
        values = list(args[2:])
    else:
        values = list(_shelf.get(proc_name) or [p[3] for p in params[2:]])
    for p, v in zip(params[2:], values):
        ok = isinstance(v, _PF_TYPES[p[0]]) and not (p[0] == PF_SPINNER and isinstance(v, bool))
        ok = ok or (p[0] == PF_TOGGLE and isinstance(v, int)) or (p[0] == PF_SLIDER and isinstance(v, int))
        if not ok:
            return PDB_CALLING_ERROR, "parameter %s has the wrong type %s" % (p[1], type(v).__name__)
    _shelf[proc_name] = values

    def _interact():
        # real gimpfu runs the procedure from its dialog code, a function of this name
        return proc["function"](image, drawable, *values)
    try:
        if run_mode == RUN_INTERACTIVE:
            _interact()
        else:
            proc["function"](image, drawable, *values)
    except Exception as e:
        return PDB_EXECUTION_ERROR, str(e)
    finally:
        image.close_open_groups()
    return PDB_SUCCESS, ""


class _PDB(object):
    """The procedural database: the few built-ins the plug-in uses, plus registered ones."""

    def gimp_selection_is_empty(self, image):
        return image.selection.pixels().count(b"\x00") == len(image.selection.pixels())

    def gimp_item_is_layer(self, item):
        return isinstance(item, gimp.Layer)

    def gimp_item_is_group(self, item):
        return bool(getattr(item, "is_group", False))

    def gimp_drawable_is_indexed(self, drawable):
        return drawable.is_indexed

    def gimp_item_get_parent(self, item):
        return None

    def gimp_image_get_item_position(self, image, item):
        return image.layers.index(item)

    def gimp_image_insert_layer(self, image, layer, parent, position):
        image.insert_layer(layer, parent, position)

    def gimp_image_select_item(self, image, operation, item):
        image.select_item(operation, item)

    def gimp_progress_set_text(self, text):
        gimp.log.progress.append(("text", text))

    def gimp_drawable_mask_intersect(self, drawable):
        """(non_empty, x, y, w, h) of the selection within the drawable, drawable coordinates."""
        img, (ox, oy) = drawable.image, drawable.offsets
        sel = img.selection
        if self.gimp_selection_is_empty(img):
            return (True, 0, 0, drawable.width, drawable.height)
        xs, ys = [], []
        for y in range(max(0, oy), min(img.height, oy + drawable.height)):
            for x in range(max(0, ox), min(img.width, ox + drawable.width)):
                if sel._data[y * img.width + x]:
                    xs.append(x - ox)
                    ys.append(y - oy)
        if not xs:
            return (False, 0, 0, 0, 0)
        return (True, min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def __getattr__(self, name):
        proc_name = name.replace("_", "-")
        if proc_name not in _registered:
            raise AttributeError("no procedure %s in the stub's PDB" % proc_name)

        def call(*args, **kw):
            run_mode = kw.pop("run_mode", RUN_NONINTERACTIVE)
            status, message = run_procedure(proc_name, run_mode, *args)
            if status != PDB_SUCCESS:
                raise gimp.error(message or status)
        return call


pdb = _PDB()
gimp.pdb = pdb

__all__ = ["gimp", "pdb", "register", "main", "CallingError", "RUN_INTERACTIVE", "RUN_NONINTERACTIVE",
           "RUN_WITH_LAST_VALS", "NORMAL_MODE", "PF_INT32", "PF_FLOAT", "PF_STRING", "PF_IMAGE",
           "PF_LAYER", "PF_CHANNEL", "PF_DRAWABLE", "PF_TOGGLE", "PF_BOOL", "PF_SLIDER", "PF_SPINNER",
           "RGB", "GRAY", "INDEXED", "CHANNEL_OP_ADD", "CHANNEL_OP_SUBTRACT", "CHANNEL_OP_REPLACE",
           "CHANNEL_OP_INTERSECT",
           "RGB_IMAGE", "RGBA_IMAGE", "GRAY_IMAGE", "GRAYA_IMAGE", "INDEXED_IMAGE", "INDEXEDA_IMAGE"]
