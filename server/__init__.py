"""The local model server of the old-photo restoration plug-ins.

Kept light on purpose: importing ``server`` or ``server.client`` must not pull in
torch (the GIMP plug-ins import the client; the server modules load the model).
Modules: ``client`` (protocol constants + the Python 2/3 client), ``config``
(ServerConfig), ``protocol`` (request parsing and validation), ``worker`` (the
model thread and job queue), ``app`` (the ROUTER loop), ``cli`` (``python -m server``).
"""
__version__ = "0.1.0"
