"""Private parts of the publisher (:mod:`mlops_hooks.publisher` is the public face).

Shared with the server, hence outside this package: :mod:`mlops_hooks.protocol` (the wire) and
:mod:`mlops_hooks.backoff` (reconnect delays, connection quality).

* :mod:`.config`: the publish URL and the settings read from the environment;
* :mod:`.buffer`: the bounded, ordered buffer and its drop policy;
* :mod:`.wire`: preparing an event for the wire (the replies are :mod:`mlops_hooks.protocol`'s);
* :mod:`.mailbox`: what the training thread shares with the background thread;
* :mod:`.connection`: pings, and the exceptions that end a connection (described in a line);
* :mod:`.worker`: the background thread that owns the WebSocket;
* :mod:`.oneshot`: one event, acknowledged (``mlops-hooks emit``);
* :mod:`.spool`: the worker with runs kept on disk (spill, offline mode, retiring the thread);
* :mod:`.offline`: the run directories on disk (``events.jsonl``, ``run.json``);
* :mod:`.mode`: ``MLOPS_HOOKS_MODE`` and ``MLOPS_HOOKS_DIR`` (:func:`.mode.is_offline`).
"""
