"""samroto.bridge.worker: the worker that hosts the model.

The server (I/O thread), the scheduler (compute thread), the request handlers, the session
registry and the backend, the seam to `samroto.core`. The add-ons never bundle this package.
"""
