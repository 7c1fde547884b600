"""samroto.bridge: the worker protocol, its codec, the worker server and the client.

Importing this package must not import torch: the add-ons load the client inside
Blender and Nuke (Python 3.9 to 3.11). The server lives in `samroto.bridge.server`.
"""
