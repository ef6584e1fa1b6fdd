#!/usr/bin/env python2
# -*- coding: utf-8 -*-
"""GIMP 2.10 plug-in (gimpfu, Python 2.7): Filters > Enhance > Restore Old Photo... and
Select Scratches... Host glue only; the logic is in oldphoto_common, the protocol in
oldphoto_client."""
from __future__ import absolute_import, division, print_function

import os
import sys

from gimpfu import (
    CHANNEL_OP_REPLACE,
    NORMAL_MODE,
    PF_DRAWABLE,
    PF_IMAGE,
    PF_SLIDER,
    PF_SPINNER,
    PF_STRING,
    PF_TOGGLE,
    gimp,
    main,
    pdb,
    register,
)

# GIMP 2.10 queries every executable in plug-ins/ (on Windows: every .py), so the
# installer keeps the helper modules in a folder beside this file.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "oldphoto_restore_lib"))
sys.path.insert(0, _HERE)
import oldphoto_common as common  # noqa: E402  (standard library only)


def _native(text):
    """Python 2's pygimp wants byte strings; the client hands out unicode."""
    if sys.version_info[0] == 2 and not isinstance(text, str):
        return text.encode("utf-8")
    return text


class _Host(common.Host):
    def __init__(self, image, layer):
        self.image, self.layer = image, layer
        self.width, self.height = layer.width, layer.height
        self.channels = (1 if layer.is_gray else 3) + (1 if layer.has_alpha else 0)
        if layer.bpp != self.channels:
            # pixel regions hand out the layer's own precision; the server takes 8-bit
            raise common.PluginError("GIMP 2.10 plug-in works on 8-bit images: convert with "
                                     "Image > Precision > 8 bit integer first.", "input")
        self.name = layer.name
        self.offsets = tuple(layer.offsets)

    def read_pixels(self, sample_bytes=1):
        # this host is 8-bit only (sample_bytes stays the class's 1: see __init__)
        w, h = self.width, self.height
        return bytes(self.layer.get_pixel_rgn(0, 0, w, h, False, False)[0:w, 0:h])

    def selection_mask(self):
        if pdb.gimp_selection_is_empty(self.image):
            return None
        w, h = self.width, self.height
        ox, oy = self.offsets
        # the selection lives in image coordinates; outside the canvas nothing is selected
        x0, y0 = max(0, ox), max(0, oy)
        x1, y1 = min(self.image.width, ox + w), min(self.image.height, oy + h)
        mask = bytearray(w * h)
        if x1 > x0 and y1 > y0:
            rgn = self.image.selection.get_pixel_rgn(x0, y0, x1 - x0, y1 - y0, False, False)
            common.paste(mask, w, 1, x0 - ox, y0 - oy, x1 - x0, y1 - y0,
                         bytes(rgn[x0:x1, y0:y1]))
        return bytes(mask)

    def progress(self, fraction, text=None):
        if text:
            pdb.gimp_progress_set_text(_native(text))
        gimp.progress_update(fraction)

    def add_layer(self, name, pixels, sample_bytes=1):
        image, src, w, h = self.image, self.layer, self.width, self.height
        layer = gimp.Layer(image, _native(name), w, h, src.type, 100.0, NORMAL_MODE)
        image.undo_group_start()
        inserted = False
        try:
            pdb.gimp_image_insert_layer(image, layer, pdb.gimp_item_get_parent(src),
                                        pdb.gimp_image_get_item_position(image, src))
            inserted = True
            layer.set_offsets(*self.offsets)
            rgn = layer.get_pixel_rgn(0, 0, w, h, True, True)
            rgn[0:w, 0:h] = pixels
            layer.flush()
            layer.merge_shadow(True)
            layer.update(0, 0, w, h)
        except Exception:
            if inserted:
                image.remove_layer(layer)
            raise
        finally:
            image.undo_group_end()
        gimp.displays_flush()

    def set_selection(self, mask):
        """The mask goes into a temporary canvas-sized channel (at the layer's offsets,
        clipped to the canvas), which replaces the selection; one undo group."""
        image, w, h = self.image, self.width, self.height
        ox, oy = self.offsets
        x0, y0 = max(0, ox), max(0, oy)
        x1, y1 = min(image.width, ox + w), min(image.height, oy + h)
        channel = gimp.Channel(image, _native("scratches"), image.width, image.height, 100.0, (0, 0, 0))
        image.undo_group_start()
        added = False
        try:
            image.add_channel(channel, 0)
            added = True
            if x1 > x0 and y1 > y0:
                rgn = channel.get_pixel_rgn(x0, y0, x1 - x0, y1 - y0, True, True)
                rgn[x0:x1, y0:y1] = common.crop(mask, w, 1, x0 - ox, y0 - oy, x1 - x0, y1 - y0)
                channel.flush()
                channel.merge_shadow(True)
                channel.update(x0, y0, x1 - x0, y1 - y0)
            pdb.gimp_image_select_item(image, CHANNEL_OP_REPLACE, channel)
        finally:
            if added:
                image.remove_channel(channel)
            image.undo_group_end()
        gimp.displays_flush()


def _interactive():
    """gimpfu does not pass the run mode on; its dialog runs the procedure from
    gimpfu._interact, where an exception also pops up a traceback dialog."""
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "_interact":
            return True
        f = f.f_back
    return False


def restore_old_photo(image, drawable, *values):
    """The procedure: the image, the layer and common.OPTIONS in their order (a script
    may leave out trailing ones: they take their defaults). Errors: a message when run
    from the menu; an exception, which gimpfu turns into an error status carrying the
    message, when called by a script."""
    try:
        if drawable is None or not pdb.gimp_item_is_layer(drawable):
            raise common.PluginError("Pick a layer to restore.", "input")
        if pdb.gimp_drawable_is_indexed(drawable):
            raise common.PluginError(common.INDEXED_REASON, "input")
        if pdb.gimp_item_is_group(drawable):
            raise common.PluginError("Pick a pixel layer, not a layer group.", "input")
        options = dict(zip([o[0] for o in common.OPTIONS], values))
        common.options_from(options)   # out-of-range numbers: said before any progress bar
        gimp.progress_init(_native(common.TITLE))
        common.run(_Host(image, drawable), options)
    except common.PluginError as e:
        if _interactive():
            if e.kind != "cancelled":
                gimp.message(_native(e.message))
            return
        raise RuntimeError(_native(e.message))


def select_scratches(image, drawable, *values):
    """Select Scratches: the image, the layer and common.SELECT_OPTIONS (server address and
    key; a script may leave them out). Errors as for restore_old_photo."""
    try:
        if drawable is None or not pdb.gimp_item_is_layer(drawable):
            raise common.PluginError("Pick a layer to find scratches on.", "input")
        if pdb.gimp_drawable_is_indexed(drawable):
            raise common.PluginError(common.INDEXED_REASON, "input")
        if pdb.gimp_item_is_group(drawable):
            raise common.PluginError("Pick a pixel layer, not a layer group.", "input")
        options = dict(zip(common.SELECT_OPTIONS, values))
        gimp.progress_init(_native(common.SELECT_TITLE))
        flagged = common.select_scratches(_Host(image, drawable), options)
        if _interactive():
            gimp.message(_native(common.selection_summary(flagged)))
    except common.PluginError as e:
        if _interactive():
            if e.kind != "cancelled":
                gimp.message(_native(e.message))
            return
        raise RuntimeError(_native(e.message))


_PF = {bool: PF_TOGGLE, str: PF_STRING, int: PF_SPINNER, float: PF_SLIDER}


def _param(name, typ, default, label):
    """A gimpfu parameter; spinners and sliders take (lowest, highest, step)."""
    if name in common.RANGES:
        return (_PF[typ], name, label, default, common.RANGES[name])
    return (_PF[typ], name, label, default)


register(
    common.PROCEDURE, common.BLURB, common.HELP + " " + common.INDEXED_REASON,
    common.AUTHOR, common.COPYRIGHT, common.DATE,
    common.MENU_LABEL, common.IMAGE_TYPES,
    [(PF_IMAGE, "image", "Input image", None),
     (PF_DRAWABLE, "drawable", "Layer to restore", None)]
    + [_param(name, typ, default, label) for name, typ, default, label, _d in common.OPTIONS],
    [],
    restore_old_photo,
    menu=common.MENU_PATH)

register(
    common.SELECT_PROCEDURE, common.SELECT_BLURB, common.SELECT_HELP + " " + common.INDEXED_REASON,
    common.AUTHOR, common.COPYRIGHT, common.DATE,
    common.SELECT_MENU_LABEL, common.IMAGE_TYPES,
    [(PF_IMAGE, "image", "Input image", None),
     (PF_DRAWABLE, "drawable", "Layer to find scratches on", None)]
    + [_param(name, typ, default, label) for name, typ, default, label, _d in common.OPTIONS
       if name in common.SELECT_OPTIONS],
    [],
    select_scratches,
    menu=common.MENU_PATH)

main()
