"""Test support for the plug-ins: the gimpfu stub (gimpfu_stub/, put that folder on
sys.path to ``import gimpfu``) and a real restoration server in a subprocess."""
