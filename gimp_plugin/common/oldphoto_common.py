# -*- coding: utf-8 -*-
"""Logic shared by the GIMP 3 and GIMP 2.10 plug-ins (runs on Python 2.7 and 3).

The plug-ins only adapt their host (pixels in and out, selection, progress,
layers, messages) to :class:`Host`; everything else lives here, once.
No third-party imports at module level: a missing pyzmq/msgpack must become a
message, never a missing menu entry.
"""
from __future__ import absolute_import, division, print_function

import re
import sys

PROCEDURE = "python-fu-oldphoto-restore"
MENU_PATH = "<Image>/Filters/Enhance"
MENU_LABEL = "Restore Old Photo..."
TITLE = "Restore Old Photo"
BLURB = "Restore an old photo; the selection marks scratches to inpaint"
HELP = ("Sends the active layer (and the selection as scratch mask) to the local "
        "old-photo restoration server and adds the restored copy as a new layer "
        "above it. The original layer is never changed.")
AUTHOR = "oldphoto-restore contributors"
COPYRIGHT = "MIT"
DATE = "2026"
#: Indexed images are greyed out in the menu: a palette cannot hold the result.
IMAGE_TYPES = "RGB*, GRAY*"
INDEXED_REASON = "Restore Old Photo works on RGB and grayscale images; convert indexed images first (Image > Mode)."

#: The second menu entry: the server's scratch detector turns into the image's selection.
SELECT_PROCEDURE = "python-fu-oldphoto-select-scratches"
SELECT_MENU_LABEL = "Select Scratches..."
SELECT_TITLE = "Select Scratches"
SELECT_BLURB = "Select the scratches, cracks, dust and spots of an old photo automatically"
SELECT_HELP = ("Sends the active layer to the local old-photo restoration server, whose scratch detector "
               "finds scratches, cracks, dust and spots; they become the image's selection (one undo "
               "step), to add to or trim with GIMP's selection tools before Restore Old Photo. The "
               "layer is never changed.")
#: The options of Select Scratches (the server settings of OPTIONS, same names).
SELECT_OPTIONS = ("server_address", "server_key")

#: Same value as oldphoto_client.DEFAULT_ADDRESS (a test keeps them equal); kept here
#: because the client module may only be imported inside the run function.
DEFAULT_ADDRESS = "tcp://127.0.0.1:5587"


def start_hint(address=DEFAULT_ADDRESS):
    # type: (str) -> str
    """How to start the server that ``address`` names, as plain text for a GIMP message."""
    command = "python -m server"
    if address != DEFAULT_ADDRESS:
        command += " --bind " + address
    return ("Start the restoration server first: in a terminal, run\n  %s\n"
            "with the Python in which the old-photo restoration project is installed "
            "(pip install -e . in its folder), and leave it running." % command)

#: The plug-in's options: (name, type, default, label, description). Both hosts
#: build their dialog/arguments from this list, in this order.
OPTIONS = (
    ("use_selection", bool, True, "Use selection as scratch mask",
     "Selected pixels are scratches to inpaint (feathered selections keep their soft edge). "
     "Off: the selection is ignored and the whole layer is restored"),
    # only meaningful with the selection as scratch mask: the server blends through that
    # mask, so without it there is nothing to restrict to (the GIMP 3 dialog greys it out)
    ("restrict_to_selection", bool, True, "Only change the selected scratches",
     "With the selection as scratch mask: blend the restored pixels into the original through "
     "the selection, nothing else changes. Without a selection, or with the selection not "
     "used as scratch mask, the whole layer is restored"),
    ("detect_scratches", bool, False, "Find scratches automatically when nothing is selected",
     "With nothing selected, the server's scratch detector finds the scratches to inpaint "
     "(only when the server offers scratch detection)"),
    ("server_address", str, DEFAULT_ADDRESS, "Server address",
     "ZeroMQ address of the restoration server"),
    ("server_key", str, "", "Server public key",
     "Only for a server on another computer: the public key it printed at start-up "
     "(leave empty on this computer)"),
    # the restore tuning of the protocol (docs/protocol.md), last: GIMP 2.10 scripts pass
    # arguments by position, so the older ones keep theirs
    ("grow", int, 0, "Grow scratch mask (px)",
     "Widen the scratch mask by this many pixels before restoring, for selections drawn "
     "tight around a scratch's soft edge (0 to 64)"),
    ("match_tone", bool, True, "Match surrounding tone",
     "With 'Only change the selected scratches': the filled scratches take the tone and colour "
     "of the untouched surroundings, so no tinted patch or seam shows"),
    ("detail", float, 1.0, "Keep film grain/detail",
     "How much of the photo's own fine detail and film grain is kept outside the scratches: "
     "1 keeps all of it, 0 gives the model's smoother result"),
    ("tone", float, 0.25, "Restore tone and colour",
     "How much of the model's tone and colour correction is applied: 0 keeps the photo's own "
     "tone (only scratches, damage and noise are repaired), 1 applies the model's"),
    ("sharpen", float, 0.3, "Sharpen edges",
     "How much the photo's strong edges are steepened (0 to 2): 0 adds no sharpening, the "
     "default makes the result as sharp as the scan it came from, more sharpens further"),
    ("black_point", float, 0.5, "Restore faded blacks",
     "How much of a faded photo's lifted, greyish black level is taken out (0 to 1; whole "
     "layer only: with 'Only change the selected scratches' the fill matches its surroundings)"),
    ("auto_tone", float, 1.0, "Correct fading and tint",
     "How much of the automatic correction of a faded photo's tone is applied: its washed-out "
     "contrast, lifted blacks and yellow or sepia cast (0 to 1; whole layer only)"),
)
DEFAULTS = dict((o[0], o[2]) for o in OPTIONS)

#: The restore options above that go to the server under the same name: the
#: defaults are the server's (oldphoto_model.RestoreOptions, sent in its ``info``;
#: the plug-in cannot import that package, so a test keeps these equal), and only
#: values that differ from them are sent.
SERVER_OPTIONS = ("grow", "match_tone", "detail", "tone", "sharpen", "black_point", "auto_tone")
#: Ranges of the numeric options: (lowest, highest, step of the dialog's spinner/slider);
#: the model package checks the same bounds (a test keeps them equal).
RANGES = {"grow": (0, 64, 1), "detail": (0.0, 1.0, 0.05), "tone": (0.0, 1.0, 0.05),
          "sharpen": (0.0, 2.0, 0.05), "black_point": (0.0, 1.0, 0.05), "auto_tone": (0.0, 1.0, 0.05)}
#: How the options are grouped in a dialog: what to restore, how, then where the server is.
DIALOG_ORDER = ("use_selection", "restrict_to_selection", "detect_scratches", "grow", "match_tone",
                "detail", "tone", "sharpen", "black_point", "auto_tone", "server_address", "server_key")

LAYER_SUFFIX = " (restored)"

#: What the server's progress stages mean, in words for the person waiting.
STAGE_WORDS = {
    "queued": "waiting for the server",
    "start": "starting",
    "encode": "reading the photo",
    "map": "repairing scratches and damage",
    "map-tail": "repairing scratches and damage",
    "decode": "painting the restored photo",
    "done": "finishing",
    "low-memory retry": "not enough memory: trying again in smaller pieces",
    "detect": "finding scratches",
}


class PluginError(Exception):
    """A failure with a message meant for the person in front of GIMP."""

    def __init__(self, message, kind="error"):
        Exception.__init__(self, message)
        self.message = message
        self.kind = kind   # "error", "unavailable", "cancelled", "missing-modules", "input"


def options_from(values):
    """Complete and type-check an options mapping (missing keys take defaults); a
    number outside its range (a script's call) is a PluginError that names it."""
    out = dict(DEFAULTS)
    for name, typ, default, label, _desc in OPTIONS:
        if name in values and values[name] is not None:
            v = values[name]
            if typ is bool:
                out[name] = bool(v)
            elif typ in (int, float):
                try:
                    v = typ(round(float(v)) if typ is int else float(v))
                except (TypeError, ValueError):
                    raise PluginError("%s must be a number, got %r." % (label, v), "input")
                lo, hi, _step = RANGES[name]
                if not lo <= v <= hi:
                    raise PluginError("%s must be from %s to %s, got %s." % (label, lo, hi, v), "input")
                out[name] = v
            else:
                out[name] = str(v).strip() or default
    return out


def missing_modules_message(exc, executable=None):
    """Text for an ImportError of pyzmq/msgpack/the client, naming this GIMP's Python."""
    exe = executable or sys.executable or "python"
    return ("Restore Old Photo needs the Python modules pyzmq and msgpack in the Python "
            "that GIMP runs plug-ins with:\n  %s\n(%s)\n\nInstall them with:\n"
            "  \"%s\" -m pip install pyzmq msgpack\n"
            "or your system's packages (Debian/Ubuntu: python3-zmq python3-msgpack)."
            % (exe, exc, exe))


def import_client():
    """Import oldphoto_client (and so pyzmq/msgpack) or raise a PluginError that says what to run."""
    try:
        import oldphoto_client
    except ImportError as e:
        raise PluginError(missing_modules_message(e), "missing-modules")
    return oldphoto_client


def layer_name(name):
    # type: (str) -> str
    """The result layer's name: NAME (restored); a result restored again becomes
    NAME (restored 2), then (restored 3), never "(restored) (restored)"."""
    base, n = (name or "Layer"), 1
    m = re.match(r"^(.*) \(restored(?: (\d+))?\)$", base)
    if m:
        base, n = m.group(1), int(m.group(2) or 1)
        return "%s (restored %d)" % (base, n + 1)
    return base + LAYER_SUFFIX


def progress_text(stage):
    # type: (str) -> str
    """Progress-bar text for a server stage name."""
    return "Restoring: %s..." % STAGE_WORDS.get(stage, stage.replace("-", " ") if stage else "working")


def plain(text):
    # type: (str) -> str
    """A message relayed from the client or server as GIMP shows it: no Markdown backticks."""
    return ("%s" % text).replace("`", "")


# ---------------------------------------------------------------- byte planes

def crop(buf, width, channels, x, y, w, h):
    """Rows y..y+h, columns x..x+w of an interleaved u8 plane (pure Python: GIMP's Python may lack numpy)."""
    stride = width * channels
    if x == 0 and w == width:
        return bytes(buf[y * stride:(y + h) * stride])
    a, b = x * channels, (x + w) * channels
    return b"".join([bytes(buf[r * stride + a:r * stride + b]) for r in range(y, y + h)])


def paste(dst, width, channels, x, y, w, h, src):
    """Write a w x h block into the bytearray ``dst`` at (x, y)."""
    stride, row = width * channels, w * channels
    for r in range(h):
        o = (y + r) * stride + x * channels
        dst[o:o + row] = src[r * row:(r + 1) * row]


def mask_bbox(mask, width, height):
    """Bounding box (x, y, w, h) of the non-zero pixels of a u8 H x W mask, or None."""
    x0, x1, y0, y1 = width, -1, -1, -1
    zero = b"\x00"
    for r in range(height):
        row = bytes(mask[r * width:(r + 1) * width])
        left = width - len(row.lstrip(zero))
        if left == width:
            continue
        right = len(row.rstrip(zero))
        if y0 < 0:
            y0 = r
        y1 = r
        x0, x1 = min(x0, left), max(x1, right)
    if y0 < 0:
        return None
    return (x0, y0, x1 - x0, y1 - y0 + 1)


# ---------------------------------------------------------------- the run

class Host(object):
    """What a GIMP version provides. Coordinates are the layer's own (0, 0 = its top-left)."""

    #: width, height, channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), layer name
    width = height = channels = 0
    name = ""
    #: bytes per sample the layer holds: 2 for a 16-bit (or deeper) image, which then
    #: travels in 16 bits when the server takes them
    sample_bytes = 1

    def read_pixels(self, sample_bytes=1):
        """The whole layer as H x W x channels samples of ``sample_bytes`` (1: u8, 2:
        u16 little-endian, the wire's order)."""
        raise NotImplementedError

    def selection_mask(self):
        """None when nothing is selected, else the selection as u8 bytes H x W in layer
        coordinates (0 outside the canvas), feathered values kept."""
        raise NotImplementedError

    def progress(self, fraction, text=None):
        pass

    def should_cancel(self):
        return False

    def add_layer(self, name, pixels, sample_bytes=1):
        """Insert a new layer (same size, offsets and type) above the active one, in one
        undo group, its pixels as ``read_pixels`` gives them; on failure leave nothing
        behind and raise."""
        raise NotImplementedError

    def set_selection(self, mask):
        """Replace the image's selection by ``mask`` (u8 H x W in layer coordinates, 255 =
        selected; nothing is selected outside the layer), in one undo group."""
        raise NotImplementedError


def describe_error(exc, client_module, address, what=TITLE):
    """Map a client exception to a PluginError with a message for people; ``what`` names
    the command (Restore Old Photo, Select Scratches)."""
    if isinstance(exc, PluginError):
        return exc
    cm = client_module
    if cm is not None and isinstance(exc, getattr(cm, "ServerUnavailable", ())):
        return PluginError("No old-photo restoration server answers at %s.\n%s"
                           % (address, start_hint(address)), "unavailable")
    if cm is not None and isinstance(exc, getattr(cm, "BadAddress", ())):
        return PluginError("The server address %s cannot work:\n%s\nCorrect it in the "
                           "plug-in's Server address setting." % (address, plain(exc.message)), "input")
    if cm is not None and isinstance(exc, getattr(cm, "TooLarge", ())):
        return PluginError(too_large_text(exc), "input")
    if cm is not None and isinstance(exc, getattr(cm, "Cancelled", ())):
        return PluginError("%s was cancelled; the image is unchanged." % what, "cancelled")
    if cm is not None and isinstance(exc, getattr(cm, "ServerError", ())):
        return PluginError("The restoration server reported an error:\n%s"
                           % plain(getattr(exc, "message", None) or exc), "error")
    if cm is not None and isinstance(exc, getattr(cm, "ClientError", ())):
        return PluginError("Talking to the restoration server at %s failed:\n%s"
                           % (address, plain(getattr(exc, "message", None) or exc)), "error")
    return PluginError("%s failed: %s: %s" % (what, type(exc).__name__, plain(exc)), "error")


def too_large_text(exc):
    """What to do about a layer (or selection box) beyond the server's limits, in
    GIMP's words; ``exc`` is the client's TooLarge."""
    w, h, mp = exc.width, exc.height, exc.max_pixels
    flags = ["--max-pixels %d" % (w * h)]
    if exc.max_side and max(w, h) > exc.max_side:
        flags.append("--max-side %d" % max(w, h))
    return ("The area to restore, %d x %d pixels (%.1f megapixels), is larger than the restoration "
            "server at %s accepts (%.1f megapixels, %d pixels per side); nothing was sent.\n"
            "Scale the image down (Image > Scale Image), or select only the scratches and keep "
            "'Only change the selected scratches' on, or restart the server with a larger limit:\n"
            "  python -m server %s" % (w, h, w * h / 1e6, exc.address, mp / 1e6, exc.max_side,
                                       " ".join(flags)))


def detection_offered(info):
    """Whether the server whose ``info`` this is can find scratches itself (protocol 2:
    ``info["detection"]["available"]``)."""
    detection = info.get("detection") if isinstance(info, dict) else None
    return isinstance(detection, dict) and detection.get("available") is True


def close_quietly(client):
    """Close a client (or None), ignoring errors: by then the outcome is already decided."""
    if client is not None:
        try:
            client.close()
        except Exception:
            pass


def server_status(address, timeout=1.0, server_key=None):
    """Ask the server at ``address`` quickly what it offers, for the dialog. Returns
    (reachable, whether it offers scratch detection, one line for the person);
    never raises (the dialog must open whatever happens)."""
    try:
        cm = import_client()
    except PluginError:
        return (False, False, "Server: cannot be contacted, this GIMP's Python lacks pyzmq or "
                              "msgpack (pressing OK shows what to install).")
    client = None
    try:
        client = cm.Client(address, server_key=server_key or None)
        client.ping(timeout=timeout)
        info = client.info()
    except getattr(cm, "BadAddress", ()) as e:
        return False, False, "Server: the address cannot work: %s" % plain(e.message)
    except getattr(cm, "ServerError", ()) as e:   # e.g. a server of another protocol version
        return False, False, "Server at %s: %s" % (address, plain(e.message))
    except Exception:
        return False, False, "Server: no answer at %s. %s" % (address, start_hint(address))
    finally:
        close_quietly(client)
    device = info.get("device") if isinstance(info, dict) else None
    offered = detection_offered(info)
    return (True, offered, "Server: ready at %s%s%s." % (
        address, " (%s)" % device if device else "", "" if offered else "; it cannot find scratches"))


def dialog_options(address, timeout=1.0, status=None):
    """Names of the options a dialog should show: scratch detection only when the
    server at ``address`` offers it (asked quickly, or taken from ``status``, a
    server_status result; any failure hides it)."""
    _ok, detection, _line = status or server_status(address, timeout)
    return [n for n in DIALOG_ORDER if n != "detect_scratches" or detection]


def mode_text(options, has_selection, detection_offered=False):
    """One sentence for the dialog: what pressing OK will do with these options."""
    opts = options_from(options)
    if has_selection and opts["use_selection"]:
        if opts["restrict_to_selection"]:
            return ("There is a selection: the selected scratches are inpainted and only the "
                    "selected area changes.")
        return "There is a selection: the selected scratches are inpainted and the whole layer is restored."
    if has_selection:
        return ("The selection is not used as scratch mask: the whole layer is restored "
                "and no scratches are inpainted.")
    if opts["detect_scratches"] and detection_offered:
        return "Nothing is selected: the server finds the scratches and the whole layer is restored."
    return ("Nothing is selected: the whole layer is restored and no scratches are inpainted "
            "(select the scratches first to have them inpainted).")


def read_layer(host, sample_bytes):
    """The host's layer pixels at ``sample_bytes`` per sample, their length checked."""
    w, h, c = host.width, host.height, host.channels
    pixels = host.read_pixels(sample_bytes)
    if len(pixels) != w * h * c * sample_bytes:
        raise PluginError("Read %d bytes from the layer, expected %d."
                          % (len(pixels), w * h * c * sample_bytes), "input")
    return pixels


def request_for(host, options, crop_plan, sample_bytes=1):
    """Plan what to send: (pixels, mask, region, server options). ``crop_plan`` is
    oldphoto_client.crop_plan (selection box -> region with context)."""
    opts = options_from(options)
    w, h, c = host.width, host.height, host.channels
    if not (w > 0 and h > 0 and 1 <= c <= 4):
        raise PluginError("The active layer is empty or of an unsupported type.", "input")
    pixels = read_layer(host, sample_bytes)
    mask = host.selection_mask() if opts["use_selection"] else None
    server_opts = {}
    region = (0, 0, w, h)
    if mask is not None:
        bbox = mask_bbox(mask, w, h)
        if bbox is None:
            raise PluginError("The selection does not touch the active layer; select the "
                              "scratches on it, or select nothing to restore the whole layer.", "input")
        if opts["restrict_to_selection"]:
            server_opts["restrict_to_mask"] = True
            region = tuple(crop_plan(w, h, bbox))
    elif opts["detect_scratches"]:
        server_opts["detect_scratches"] = True
    for name in SERVER_OPTIONS:   # the server's defaults apply to what is left alone
        if opts[name] != DEFAULTS[name]:
            server_opts[name] = opts[name]
    return pixels, mask, region, server_opts


def run(host, options, client_module=None):
    """Restore the host's active layer into a new layer. Raises PluginError on failure,
    having left the image as it was. Returns the new layer's name."""
    opts = options_from(options)
    address = opts["server_address"]
    cm = client_module or import_client()
    size = 2 if host.sample_bytes == 2 else 1
    pixels, mask, region, server_opts = request_for(host, opts, cm.crop_plan, size)
    w, h, c = host.width, host.height, host.channels
    rx, ry, rw, rh = region
    client = None
    host.progress(0.0, "Contacting the restoration server...")
    try:
        client = cm.Client(address, server_key=opts["server_key"] or None)
        client.ping()
        if size == 2 and not client.supports_dtype("u16"):
            size, pixels = 1, read_layer(host, 1)     # a server that takes 8 bits only
        # a server without detection restores without a mask (its dialog hides the option)
        detect = bool(server_opts.pop("detect_scratches", False)) and detection_offered(client.info())
        px = c * size     # bytes per pixel
        sent = pixels if region == (0, 0, w, h) else crop(pixels, w, px, rx, ry, rw, rh)
        sent_mask = None if mask is None else crop(mask, w, 1, rx, ry, rw, rh)

        def on_progress(fraction, stage=None):
            host.progress(0.05 + 0.9 * max(0.0, min(1.0, float(fraction))),
                          progress_text(stage) if stage else None)

        kw = {"detect": True} if detect else {}     # only then: an older client lacks the argument
        if size == 2:
            kw["dtype"] = "u16"
        result, _meta = client.restore(sent, rw, rh, c, mask=sent_mask, options=server_opts,
                                       progress=on_progress, should_cancel=host.should_cancel, **kw)
    except Exception as e:   # every failure becomes a message; nothing was made yet
        raise describe_error(e, cm, address)
    finally:
        close_quietly(client)
    if len(result) != rw * rh * px:
        raise PluginError("The server returned %d bytes, expected %d; the image is unchanged."
                          % (len(result), rw * rh * px), "error")
    if region == (0, 0, w, h):
        out = result
    else:
        out = bytearray(pixels)
        paste(out, w, px, rx, ry, rw, rh, result)
        out = bytes(out)
    host.progress(0.97, "Adding the restored layer...")
    name = layer_name(host.name)
    host.add_layer(name, out, size)
    host.progress(1.0, None)
    return name


def select_progress_text(stage):
    # type: (str) -> str
    """Progress-bar text of Select Scratches for a server stage name."""
    return "Select Scratches: %s..." % STAGE_WORDS.get(stage, stage.replace("-", " ") if stage else "working")


def select_scratches(host, options, client_module=None):
    """Select Scratches: ask the server to find the scratches of the host's active layer
    and make them the image's selection (``host.set_selection``, one undo step). Returns
    the share of the layer's pixels selected; when none is found the selection is left as
    it was. Raises PluginError on failure, having left the image as it was."""
    opts = options_from(options)
    address = opts["server_address"]
    cm = client_module or import_client()
    w, h, c = host.width, host.height, host.channels
    if not (w > 0 and h > 0 and 1 <= c <= 4):
        raise PluginError("The active layer is empty or of an unsupported type.", "input")
    pixels = host.read_pixels()
    if len(pixels) != w * h * c:
        raise PluginError("Read %d bytes from the layer, expected %d." % (len(pixels), w * h * c), "input")
    client = None
    host.progress(0.0, "Contacting the restoration server...")
    try:
        client = cm.Client(address, server_key=opts["server_key"] or None)
        client.ping()
        info = client.info()
        if not detection_offered(info):
            detection = info.get("detection") if isinstance(info, dict) else None
            why = detection.get("reason") if isinstance(detection, dict) else None
            raise PluginError("The restoration server at %s cannot find scratches%s.\nSelect them by hand, "
                              "or start a server that has the scratch detector (python -m server)."
                              % (address, ": " + plain(why) if why else ""), "error")

        def on_progress(fraction, stage=None):
            host.progress(0.05 + 0.85 * max(0.0, min(1.0, float(fraction))),
                          select_progress_text(stage) if stage else None)

        mask, _prob, meta = client.detect(pixels, w, h, c, progress=on_progress,
                                          should_cancel=host.should_cancel)
    except Exception as e:   # every failure becomes a message; nothing was changed yet
        raise describe_error(e, cm, address, SELECT_TITLE)
    finally:
        close_quietly(client)
    if len(mask) != w * h:
        raise PluginError("The server returned %d bytes, expected %d; the image is unchanged."
                          % (len(mask), w * h), "error")
    flagged = (w * h - bytes(mask).count(b"\x00")) / float(w * h)
    if flagged > 0:
        host.progress(0.95, "Selecting the scratches...")
        host.set_selection(mask)
    host.progress(1.0, None)
    return flagged


def selection_summary(flagged):
    # type: (float) -> str
    """What Select Scratches found, for the person."""
    if flagged <= 0:
        return ("Select Scratches found no scratches on this layer; the selection is unchanged. "
                "Select them by hand with GIMP's selection tools.")
    return ("Select Scratches selected %.2f %% of the layer. Add or remove parts with GIMP's selection "
            "tools, then use Restore Old Photo." % (100.0 * flagged))
