"""The app's routes (the server's outermost layer).

Publishing (``/ws/publish``, ``POST /api/events``), subscribing (``/ws``), uploads
(``POST /api/files``), the REST fallback, ``/healthz`` and ``/metrics``; every route checks the
guard (:mod:`mlops_hooks.server.security`) first. Endpoints reach the server through
:class:`~mlops_hooks.server.core.Core`; nothing below them imports an endpoint.
"""
