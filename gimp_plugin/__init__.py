"""The GIMP plug-ins of the old-photo restorer and their installer.

gimp3/ and gimp2/ hold the host glue, common/ the logic both share (Python 2.7
and 3); the client protocol module is server/client.py, copied in at install.
Never imports torch.
"""
