"""Private parts of the publisher (:mod:`mlops_hooks.publisher` is the public face).

* :mod:`.config`: the publish URL and the settings read from the environment;
* :mod:`.buffer`: the bounded, ordered buffer and its drop policy;
* :mod:`.backoff`: reconnect delays (exponential, full jitter) and connection quality;
* :mod:`.wire`: preparing an event for the wire and reading the server's replies;
* :mod:`.mailbox`: what the training thread shares with the background thread;
* :mod:`.worker`: the background thread that owns the WebSocket;
* :mod:`.oneshot`: one event, acknowledged (``mlops-hooks emit``).
"""
