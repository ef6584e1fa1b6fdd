"""Stub of GIMP 2.10's ``gimp`` module (see README.md): images, drawables with real
bytes, pixel regions, undo, progress and messages."""
from __future__ import absolute_import, division, print_function

# image types (gimpenums)
RGB_IMAGE, RGBA_IMAGE, GRAY_IMAGE, GRAYA_IMAGE, INDEXED_IMAGE, INDEXEDA_IMAGE = range(6)
RGB, GRAY, INDEXED = range(3)
CHANNEL_OP_ADD, CHANNEL_OP_SUBTRACT, CHANNEL_OP_REPLACE, CHANNEL_OP_INTERSECT = range(4)
BPP = {RGB_IMAGE: 3, RGBA_IMAGE: 4, GRAY_IMAGE: 1, GRAYA_IMAGE: 2, INDEXED_IMAGE: 1, INDEXEDA_IMAGE: 2}
BASE_OF = {RGB_IMAGE: RGB, RGBA_IMAGE: RGB, GRAY_IMAGE: GRAY, GRAYA_IMAGE: GRAY,
           INDEXED_IMAGE: INDEXED, INDEXEDA_IMAGE: INDEXED}


class error(RuntimeError):
    """gimp.error: what a failing PDB call raises."""


class _Log(object):
    """Everything the plug-in showed: messages, progress calls, display flushes."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.messages = []
        self.progress = []      # ("init", text) / ("update", fraction) / ("text", text)
        self.flushes = 0
        self.warnings = []


log = _Log()


def message(text):
    log.messages.append(text)


def progress_init(text=None):
    log.progress.append(("init", text))


def progress_update(fraction):
    if not 0.0 <= fraction <= 1.0:
        log.warnings.append("progress_update(%r) outside 0..1" % fraction)
    log.progress.append(("update", fraction))


def displays_flush():
    log.flushes += 1


class _UndoStep(object):
    def __init__(self, label):
        self.label, self.children, self.revert = label, [], None

    def undo(self):
        for child in reversed(self.children):
            child.undo()
        if self.revert is not None:
            self.revert()


class Image(object):
    def __init__(self, width, height, base_type=RGB):
        self.width, self.height, self.base_type = int(width), int(height), base_type
        self.layers = []        # top first, as in GIMP
        self.channels = []      # the image's channels (not the selection), top first
        self.selection = Channel(self, "Selection", self.width, self.height, 100.0)
        self.selection._attached = True
        self.active_layer = None
        self.undo_stack = []    # top-level steps; a group is one step
        self._open_groups = []
        self.dirty = 0

    # -- undo ------------------------------------------------------------------
    def _push(self, label, revert):
        step = _UndoStep(label)
        step.revert = revert
        (self._open_groups[-1].children if self._open_groups else self.undo_stack).append(step)
        self.dirty += 1

    def undo_group_start(self):
        self._open_groups.append(_UndoStep("group"))

    def undo_group_end(self):
        if not self._open_groups:
            raise error("undo_group_end without undo_group_start")
        g = self._open_groups.pop()
        if g.children:   # GIMP drops empty groups
            (self._open_groups[-1].children if self._open_groups else self.undo_stack).append(g)

    def undo(self):
        """Edit > Undo: revert the last top-level step."""
        self.undo_stack.pop().undo()

    def close_open_groups(self):
        """What GIMP does when a plug-in returns with groups still open."""
        if self._open_groups:
            log.warnings.append("Plug-in left image undo in inconsistent state, closing open undo groups.")
            while self._open_groups:
                self.undo_group_end()

    # -- layers -------------------------------------------------------------------
    def insert_layer(self, layer, parent=None, position=0):
        if layer.image is not self:
            raise error("layer belongs to another image")
        if layer._attached:
            raise error("layer is already in the image")
        if parent is not None:
            raise error("layer groups are not modelled by the stub")
        position = max(0, min(int(position), len(self.layers)))
        self.layers.insert(position, layer)
        layer._attached = True
        prev_active = self.active_layer
        self.active_layer = layer

        def revert():
            self.layers.remove(layer)
            layer._attached = False
            self.active_layer = prev_active
        self._push("add layer", revert)

    def add_layer(self, layer, position=0):
        self.insert_layer(layer, None, position)

    def remove_layer(self, layer):
        if layer not in self.layers:
            raise error("layer is not in this image")
        i = self.layers.index(layer)
        self.layers.remove(layer)
        layer._attached = False
        if self.active_layer is layer:
            self.active_layer = self.layers[0] if self.layers else None

        def revert():
            self.layers.insert(i, layer)
            layer._attached = True
        self._push("remove layer", revert)

    # -- channels -------------------------------------------------------------------
    def add_channel(self, channel, position=0):
        if channel.image is not self or channel._attached or not isinstance(channel, Channel):
            raise error("not a free channel of this image")
        if (channel.width, channel.height) != (self.width, self.height):
            raise error("a channel must be the image's size")
        self.channels.insert(max(0, min(int(position), len(self.channels))), channel)
        channel._attached = True

        def revert():
            self.channels.remove(channel)
            channel._attached = False
        self._push("add channel", revert)

    def remove_channel(self, channel):
        if channel not in self.channels:
            raise error("channel is not in this image")
        i = self.channels.index(channel)
        self.channels.remove(channel)
        channel._attached = False

        def revert():
            self.channels.insert(i, channel)
            channel._attached = True
        self._push("remove channel", revert)

    def select_item(self, operation, item):
        """gimp-image-select-item with CHANNEL_OP_REPLACE (the only operation modelled)."""
        if operation != CHANNEL_OP_REPLACE:
            raise error("the stub models CHANNEL_OP_REPLACE only")
        if not isinstance(item, Channel) or not item._attached or item.image is not self:
            raise error("gimp-image-select-item: the item is not attached to this image")
        if item._shadow is not None:
            log.warnings.append("selected a channel whose shadow was never merged")
        self.selection._write(0, 0, self.width, self.height, bytes(item._data))

    def clean_all(self):
        self.dirty = 0


class PixelRgn(object):
    """rgn[x1:x2, y1:y2] in drawable coordinates, bytes in and out."""

    def __init__(self, drawable, x, y, w, h, dirty, shadow):
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > drawable.width or y + h > drawable.height:
            raise error("pixel region %r outside the drawable" % ((x, y, w, h),))
        self.drawable, self.x, self.y, self.w, self.h = drawable, x, y, w, h
        self.dirty, self.shadow = bool(dirty), bool(shadow)
        self.bpp = drawable.bpp

    def _rect(self, key):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError("subscript must be [x1:x2, y1:y2] or [x, y]")
        xs, ys = key
        if not isinstance(xs, slice):
            xs = slice(xs, xs + 1)
        if not isinstance(ys, slice):
            ys = slice(ys, ys + 1)
        x1, x2 = xs.start if xs.start is not None else self.x, xs.stop if xs.stop is not None else self.x + self.w
        y1, y2 = ys.start if ys.start is not None else self.y, ys.stop if ys.stop is not None else self.y + self.h
        if x1 < self.x or y1 < self.y or x2 > self.x + self.w or y2 > self.y + self.h or x2 <= x1 or y2 <= y1:
            raise IndexError("subscript %r outside the region %r" % ((x1, x2, y1, y2), (self.x, self.y, self.w, self.h)))
        return x1, y1, x2 - x1, y2 - y1

    def __getitem__(self, key):
        x, y, w, h = self._rect(key)
        src = self.drawable._shadow if (self.shadow and self.drawable._shadow is not None) else self.drawable._data
        return _crop(src, self.drawable.width, self.bpp, x, y, w, h)

    def __setitem__(self, key, value):
        if not self.dirty:
            raise TypeError("pixel region is read-only (dirty=False)")
        x, y, w, h = self._rect(key)
        value = bytes(value)
        if len(value) != w * h * self.bpp:
            raise ValueError("string is %d bytes, region needs %d" % (len(value), w * h * self.bpp))
        d = self.drawable
        if self.shadow:
            if d._shadow is None:
                d._shadow = bytearray(d._data)
            _paste(d._shadow, d.width, self.bpp, x, y, w, h, value)
        else:
            d._write(x, y, w, h, value)


def _crop(buf, width, bpp, x, y, w, h):
    stride = width * bpp
    return b"".join(bytes(buf[r * stride + x * bpp:r * stride + (x + w) * bpp]) for r in range(y, y + h))


def _paste(dst, width, bpp, x, y, w, h, src):
    stride, row = width * bpp, w * bpp
    for r in range(h):
        o = (y + r) * stride + x * bpp
        dst[o:o + row] = src[r * row:(r + 1) * row]


class Drawable(object):
    def __init__(self, image, name, width, height, type_, opacity=100.0, mode=0):
        if width < 1 or height < 1:
            raise error("drawable size must be positive")
        self.image, self.name = image, name
        self.width, self.height, self.type = int(width), int(height), type_
        self.bpp = BPP[type_]
        self.opacity, self.mode = opacity, mode
        self._offsets = (0, 0)
        self._data = bytearray(self.width * self.height * self.bpp)
        self._shadow = None
        self._attached = False
        self.updates = []

    @property
    def offsets(self):
        return self._offsets

    @property
    def has_alpha(self):
        return self.type in (RGBA_IMAGE, GRAYA_IMAGE, INDEXEDA_IMAGE)

    @property
    def is_rgb(self):
        return BASE_OF[self.type] == RGB

    @property
    def is_gray(self):
        return BASE_OF[self.type] == GRAY

    @property
    def is_indexed(self):
        return BASE_OF[self.type] == INDEXED

    def get_pixel_rgn(self, x, y, w, h, dirty=True, shadow=False):
        return PixelRgn(self, x, y, w, h, dirty, shadow)

    def _write(self, x, y, w, h, value):
        old = _crop(self._data, self.width, self.bpp, x, y, w, h)
        _paste(self._data, self.width, self.bpp, x, y, w, h, value)
        if self._attached:
            self.image._push("paint", lambda: _paste(self._data, self.width, self.bpp, x, y, w, h, old))

    def merge_shadow(self, undo=True):
        if self._shadow is not None:
            shadow, self._shadow = bytes(self._shadow), None
            self._write(0, 0, self.width, self.height, shadow)

    def flush(self):
        pass

    def update(self, x, y, w, h):
        self.updates.append((x, y, w, h))

    def set_offsets(self, x, y):
        old = self._offsets
        self._offsets = (int(x), int(y))
        if self._attached:
            self.image._push("move", lambda: setattr(self, "_offsets", old))

    def pixels(self):
        """Test helper: all bytes (not part of gimpfu)."""
        return bytes(self._data)


class Layer(Drawable):
    def __init__(self, image, name, width, height, type_=RGB_IMAGE, opacity=100.0, mode=0):
        if BASE_OF[type_] != image.base_type:
            raise error("layer type does not match the image's base type")
        Drawable.__init__(self, image, name, width, height, type_, opacity, mode)
        self.is_group = False


class Channel(Drawable):
    def __init__(self, image, name, width, height, opacity=100.0, color=(0, 0, 0)):
        Drawable.__init__(self, image, name, width, height, GRAY_IMAGE, opacity)
        self.color = color
