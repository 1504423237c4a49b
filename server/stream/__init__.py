"""The outgoing stream.

The :class:`~.record.Record` (encoded once, shared by every subscriber), coalescing of
superseded state, the fan-out :class:`~.hub.Hub` and prebuilt WebSocket frames.
"""
