#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""GIMP 3 plug-in: Filters > Enhance > Restore Old Photo... and Select Scratches...
(host glue only; the logic is in oldphoto_common, the protocol in oldphoto_client)."""
import array
import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

# the installer puts oldphoto_common and oldphoto_client next to this file
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oldphoto_common as common  # noqa: E402  (standard library only)

_FORMATS = {1: "Y' u8", 2: "Y'A u8", 3: "R'G'B' u8", 4: "R'G'B'A u8"}
#: the same, 16 bits per sample (babl's u16 is in the machine's byte order)
_FORMATS16 = {c: f.replace("u8", "u16") for c, f in _FORMATS.items()}
_EIGHT_BIT = ("U8_LINEAR", "U8_NON_LINEAR", "U8_PERCEPTUAL")


def _format(channels, sample_bytes):
    return (_FORMATS16 if sample_bytes == 2 else _FORMATS)[channels]


def _wire_order(data, sample_bytes):
    """u16 samples between the machine's byte order and the wire's little-endian."""
    if sample_bytes != 2 or sys.byteorder == "little":
        return bytes(data)
    a = array.array("H", bytes(data))
    a.byteswap()
    return a.tobytes()


class _Host(common.Host):
    def __init__(self, image, layer):
        self.image, self.layer = image, layer
        self.width, self.height = layer.get_width(), layer.get_height()
        self.channels = (1 if layer.is_gray() else 3) + (1 if layer.has_alpha() else 0)
        self.name = layer.get_name()
        self.offsets = tuple(layer.get_offsets()[-2:])
        # 16-bit, 32-bit and floating-point images travel in 16 bits (when the server takes them)
        eight = [getattr(Gimp.Precision, n) for n in _EIGHT_BIT if hasattr(Gimp.Precision, n)]
        self.sample_bytes = 1 if image.get_precision() in eight else 2

    def read_pixels(self, sample_bytes=1):
        rect = Gegl.Rectangle.new(0, 0, self.width, self.height)
        data = self.layer.get_buffer().get(rect, 1.0, _format(self.channels, sample_bytes), Gegl.AbyssPolicy.NONE)
        return _wire_order(data, sample_bytes)

    def selection_mask(self):
        if Gimp.Selection.is_empty(self.image):
            return None
        ox, oy = self.offsets
        # image coordinates; the abyss outside the canvas reads as unselected (0)
        rect = Gegl.Rectangle.new(ox, oy, self.width, self.height)
        sel = self.image.get_selection().get_buffer()
        return bytes(sel.get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE))

    def progress(self, fraction, text=None):
        if text:
            Gimp.progress_set_text(text)
        Gimp.progress_update(fraction)

    def add_layer(self, name, pixels, sample_bytes=1):
        image, src = self.image, self.layer
        layer = Gimp.Layer.new(image, name, self.width, self.height, src.type(), 100.0,
                               Gimp.LayerMode.NORMAL)
        image.undo_group_start()
        inserted = False
        try:
            image.insert_layer(layer, src.get_parent(), image.get_item_position(src))
            inserted = True
            layer.set_offsets(*self.offsets)
            buf = layer.get_buffer()
            # bytes go in as they are (a list of ints would cost ~10x the time)
            buf.set(Gegl.Rectangle.new(0, 0, self.width, self.height), _format(self.channels, sample_bytes),
                    _wire_order(pixels, sample_bytes))
            buf.flush()
            layer.update(0, 0, self.width, self.height)
        except Exception:
            if inserted:
                image.remove_layer(layer)
            else:
                layer.delete()
            raise
        finally:
            image.undo_group_end()
        Gimp.displays_flush()

    def set_selection(self, mask):
        """The mask goes into a temporary channel of the canvas's size (at the layer's
        offsets, clipped to the canvas), which replaces the selection; one undo group."""
        image = self.image
        cw, ch = image.get_width(), image.get_height()
        ox, oy = self.offsets
        x0, y0 = max(0, ox), max(0, oy)
        x1, y1 = min(cw, ox + self.width), min(ch, oy + self.height)
        channel = Gimp.Channel.new(image, "scratches", cw, ch, 100.0, Gegl.Color.new("black"))
        image.undo_group_start()
        inserted = False
        try:
            image.insert_channel(channel, None, 0)
            inserted = True
            if x1 > x0 and y1 > y0:
                block = common.crop(mask, self.width, 1, x0 - ox, y0 - oy, x1 - x0, y1 - y0)
                buf = channel.get_buffer()
                buf.set(Gegl.Rectangle.new(x0, y0, x1 - x0, y1 - y0), "Y' u8", block)
                buf.flush()
            image.select_item(Gimp.ChannelOps.REPLACE, channel)
        finally:
            if inserted:
                image.remove_channel(channel)
            else:
                channel.delete()
            image.undo_group_end()
        Gimp.displays_flush()


def _wrapping(label):
    """Long status lines wrap instead of widening the dialog."""
    label.set_line_wrap(True)
    label.set_max_width_chars(60)
    label.set_xalign(0.0)
    return label


class OldPhotoRestore(Gimp.PlugIn):
    def do_query_procedures(self):
        return [common.PROCEDURE, common.SELECT_PROCEDURE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        if name == common.SELECT_PROCEDURE:
            return self._select_procedure(name)
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        proc.set_image_types(common.IMAGE_TYPES)
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label(common.MENU_LABEL.replace("...", "\u2026"))
        proc.add_menu_path(common.MENU_PATH)
        proc.set_documentation(common.BLURB, common.HELP + " " + common.INDEXED_REASON, name)
        proc.set_attribution(common.AUTHOR, common.COPYRIGHT, common.DATE)
        flags = GObject.ParamFlags.READWRITE
        for opt, typ, default, label, desc in common.OPTIONS:
            arg = opt.replace("_", "-")
            if typ is bool:
                proc.add_boolean_argument(arg, label, desc, default, flags)
            elif typ is int:
                lo, hi, _step = common.RANGES[opt]
                proc.add_int_argument(arg, label, desc, lo, hi, default, flags)
            elif typ is float:
                lo, hi, _step = common.RANGES[opt]
                proc.add_double_argument(arg, label, desc, lo, hi, default, flags)
            else:
                proc.add_string_argument(arg, label, desc, default, flags)
        return proc

    def _select_procedure(self, name):
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_select, None)
        proc.set_image_types(common.IMAGE_TYPES)
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label(common.SELECT_MENU_LABEL.replace("...", "\u2026"))
        proc.add_menu_path(common.MENU_PATH)
        proc.set_documentation(common.SELECT_BLURB, common.SELECT_HELP, name)
        proc.set_attribution(common.AUTHOR, common.COPYRIGHT, common.DATE)
        flags = GObject.ParamFlags.READWRITE
        for opt, _typ, default, label, desc in common.OPTIONS:
            if opt in common.SELECT_OPTIONS:
                proc.add_string_argument(opt.replace("_", "-"), label, desc, default, flags)
        return proc

    def _layer(self, drawables, what):
        """The one pixel layer a procedure works on, or a PluginError saying what to pick."""
        if len(drawables) != 1 or not drawables[0].is_layer():
            raise common.PluginError("Pick exactly one layer to %s." % what, "input")
        layer = drawables[0]
        if layer.is_indexed():
            raise common.PluginError(common.INDEXED_REASON, "input")
        if layer.is_group():
            raise common.PluginError("Pick a pixel layer, not a layer group.", "input")
        return layer

    def run_select(self, procedure, run_mode, image, drawables, config, run_data):
        try:
            layer = self._layer(drawables, "find scratches on")
            if run_mode == Gimp.RunMode.INTERACTIVE and not self._select_dialog(procedure, config):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            options = dict((o, config.get_property(o.replace("_", "-"))) for o in common.SELECT_OPTIONS)
            Gimp.progress_init(common.SELECT_TITLE)
            flagged = common.select_scratches(_Host(image, layer), options)
            if run_mode == Gimp.RunMode.INTERACTIVE:
                Gimp.message(common.selection_summary(flagged))
        except common.PluginError as e:
            return self._fail(procedure, e.message, e.kind)
        except Exception as e:   # a bug: still a message, never a silent crash
            return self._fail(procedure, "Select Scratches failed: %s: %s" % (type(e).__name__, e), "error")
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

    def _select_dialog(self, procedure, config):
        """The server settings and whether that server can find scratches."""
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi
        GimpUi.init(common.SELECT_PROCEDURE)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, common.SELECT_TITLE)
        address = config.get_property("server-address") or common.DEFAULT_ADDRESS
        status = common.server_status(address, server_key=config.get_property("server-key"))
        _wrapping(dialog.get_label("oldphoto-server", status[2], False, False))
        dialog.fill([o.replace("_", "-") for o in common.SELECT_OPTIONS] + ["oldphoto-server"])
        ok = dialog.run()
        dialog.destroy()
        return ok

    def run(self, procedure, run_mode, image, drawables, config, run_data):
        interactive = run_mode == Gimp.RunMode.INTERACTIVE
        try:
            layer = self._layer(drawables, "restore")
            if interactive and not self._dialog(procedure, config, image):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            options = dict((o[0], config.get_property(o[0].replace("_", "-")))
                           for o in common.OPTIONS)
            Gimp.progress_init(common.TITLE)
            common.run(_Host(image, layer), options)
        except common.PluginError as e:
            return self._fail(procedure, e.message, e.kind)
        except Exception as e:   # a bug: still a message, never a silent crash
            return self._fail(procedure, "Restore Old Photo failed: %s: %s"
                              % (type(e).__name__, e), "error")
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

    def _dialog(self, procedure, config, image):
        """The options, with what will happen above them (selection and mode, kept up to
        date as boxes are ticked) and the server's state below; the scratch-mask box
        greys out "only the selected scratches" when unticked."""
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi
        GimpUi.init(common.PROCEDURE)
        dialog = GimpUi.ProcedureDialog.new(procedure, config, common.TITLE)
        address = config.get_property("server-address") or common.DEFAULT_ADDRESS
        status = common.server_status(address, server_key=config.get_property("server-key"))
        detection = bool(status[1])
        has_selection = not Gimp.Selection.is_empty(image)

        def mode():
            return common.mode_text(dict((o[0], config.get_property(o[0].replace("_", "-")))
                                         for o in common.OPTIONS), has_selection, detection)
        mode_label = _wrapping(dialog.get_label("oldphoto-mode", mode(), False, False))
        _wrapping(dialog.get_label("oldphoto-server", status[2], False, False))

        def refresh(*_args):
            mode_label.set_text(mode())
        for prop in ("use-selection", "restrict-to-selection", "detect-scratches"):
            config.connect("notify::" + prop, refresh)
        if has_selection:
            dialog.set_sensitive("restrict-to-selection", True, config, "use-selection", False)
            dialog.set_sensitive("grow", True, config, "use-selection", False)
            # tone matching belongs to the blend through the selection
            dialog.set_sensitive("match-tone", True, config, "restrict-to-selection", False)
        else:   # nothing to use or restrict to: the mask's options are moot
            for prop in ("use-selection", "restrict-to-selection", "grow", "match-tone"):
                dialog.set_sensitive(prop, False, None, None, False)
        shown = common.dialog_options(address, status=status)
        dialog.fill(["oldphoto-mode"] + [n.replace("_", "-") for n in shown] + ["oldphoto-server"])
        ok = dialog.run()
        dialog.destroy()
        return ok

    def _fail(self, procedure, message, kind):
        # GIMP shows the returned error to the person (and to a calling script)
        status = Gimp.PDBStatusType.CANCEL if kind == "cancelled" else Gimp.PDBStatusType.EXECUTION_ERROR
        err = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
        return procedure.new_return_values(status, err)


if __name__ == "__main__":
    Gimp.main(OldPhotoRestore.__gtype__, sys.argv)
