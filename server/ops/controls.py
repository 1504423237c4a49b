"""Which open ``/ws/publish`` connection carries which run, and control messages down them.

A publisher's connection is :meth:`Controls.attach`-ed when it opens; every event it sends with
a ``run_id`` notes that run on it (:meth:`Link.note`, a set insertion). ``POST
/api/runs/{run_id}/stop`` then sends ``{"type": "control", "action": "stop", ...}`` down the
connection that last carried the run (:meth:`Controls.send`); when none carries it right now
(the publisher is reconnecting), the message waits and goes out as soon as a connection notes
the run again. The message is written as one whole frame between the connection's replies, so it
never splits one; publishers that do not know it ignore it (docs/protocol.md).

In a fleet (``--backend redis://``) the run's publisher may be connected to another server. The
request's audit entry (an ``activity_update`` with ``action_type: "stop_requested"``) travels
the shared stream to every server; :meth:`Controls.observe` sees it on each of them and sends
the same message where the run's connection is (or keeps it, should the publisher reconnect
there). The training process acts on a request once (a second copy is ignored).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import msgspec

from mlops_hooks.server.stream.frames import FrameSink
from mlops_hooks.server.stream.record import text_frame

__all__ = ["MAX_WAITING", "STOP_REQUESTED", "Controls", "Link", "stop_message"]

log = logging.getLogger("mlops_hooks.server")
#: Control messages waiting for their run's publisher to reconnect, at most (oldest dropped).
MAX_WAITING = 1000
#: Runs remembered per connection, at most (a process that runs many: the newest are kept).
MAX_RUNS_PER_LINK = 10_000
#: ``action_type`` of a Stop request's audit entry (its ``metadata`` names the run).
STOP_REQUESTED = "stop_requested"
_encode = msgspec.json.Encoder().encode


def stop_message(run_id: str, request_id: Any, requested_by: Any,
                 source: Any) -> dict[str, Any]:
    """The ``control`` message asking the run's publisher to stop it."""
    return {"type": "control", "action": "stop", "run_id": run_id,
            "request_id": request_id if isinstance(request_id, str) else None,
            "requested_by": requested_by if isinstance(requested_by, str) else "anonymous",
            "source": source if isinstance(source, str) else None}


class Link:
    """One open publisher connection, as the control side sees it.

    Args:
        controls: The registry.
        ws: The connection (an ASGI WebSocket with ``send_text``).
        sink: Its frame sink, when the server offers one (frames are then written at once).
    """

    __slots__ = ("_controls", "runs", "sink", "ws")

    def __init__(self, controls: Controls, ws: Any, sink: FrameSink | None) -> None:
        self._controls = controls
        self.ws = ws
        self.sink = sink
        self.runs: set[str] = set()

    def note(self, run_id: str | None) -> None:
        """An event of ``run_id`` arrived on this connection."""
        if run_id is None or run_id in self.runs:
            return
        if len(self.runs) >= MAX_RUNS_PER_LINK:
            self.runs.clear()
        self.runs.add(run_id)
        self._controls.carried(run_id, self)

    def write(self, text: str) -> bool:
        """Send one control message now (``False``: the connection cannot take it)."""
        sink = self.sink
        if sink is not None:
            if not sink.ready():
                return False
            sink.write(text_frame(text.encode()))
            return True
        asyncio.get_running_loop().create_task(self._send(text))
        return True

    async def _send(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except Exception as exc:  # the publisher left: it gets the message when it is back
            log.debug("mlops-hooks: a control message could not be sent (%r)", exc)


class Controls:
    """The registry of one server's publisher connections, by run."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._waiting: OrderedDict[str, list[str]] = OrderedDict()

    def attach(self, ws: Any, sink: FrameSink | None) -> Link:
        """A publisher connection opened."""
        return Link(self, ws, sink)

    def detach(self, link: Link) -> None:
        """A publisher connection closed: its runs are carried by no connection now."""
        for run_id in link.runs:
            if self._links.get(run_id) is link:
                del self._links[run_id]
        link.runs.clear()

    def carried(self, run_id: str, link: Link) -> None:
        """``link`` carries ``run_id`` (the newest connection wins); send what waited for it."""
        self._links[run_id] = link
        for text in self._waiting.pop(run_id, ()):
            if not link.write(text):
                self._wait(run_id, text)

    def connected(self, run_id: str) -> bool:
        """A publisher connection of this server carries ``run_id`` now."""
        return run_id in self._links

    def send(self, run_id: str, message: dict[str, Any]) -> bool:
        """Send a control message to the run's publisher, or keep it until it reconnects.

        Returns:
            ``True`` when written to a connection now, ``False`` when it waits.
        """
        text = _encode(message).decode()
        link = self._links.get(run_id)
        if link is not None and link.write(text):
            return True
        self._wait(run_id, text)
        return False

    def observe(self, event: Any, local: bool) -> None:
        """Every delivered event: route other servers' Stop requests; forget ended runs."""
        kind = event.type
        if kind in ("training_completed", "training_failed") and event.run_id:
            self.ended(event.run_id)
            return
        if local or kind != "activity_update" or event.activity.action_type != STOP_REQUESTED:
            return
        meta = event.activity.metadata
        if not isinstance(meta, dict) or not isinstance(meta.get("run_id"), str):
            return
        self.send(meta["run_id"], stop_message(meta["run_id"], meta.get("request_id"),
                                               meta.get("requested_by"), meta.get("source")))

    def ended(self, run_id: str) -> None:
        """The run ended: nothing waits for it any more."""
        self._waiting.pop(run_id, None)

    def _wait(self, run_id: str, text: str) -> None:
        self._waiting.setdefault(run_id, []).append(text)
        self._waiting.move_to_end(run_id)
        while len(self._waiting) > MAX_WAITING:
            self._waiting.popitem(last=False)
