"""Logic shared by both plug-ins; oldphoto_common.py is copied next to them at install."""
