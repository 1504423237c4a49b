"""The backend seam: who numbers events, keeps the ordered stream and the idempotency space.

This module is the :class:`Backend` protocol only; the records a backend streams are the
stream layer's (:mod:`mlops_hooks.server.stream.record`).

A backend receives every validated event (:meth:`Backend.publish`), gives it the next ``seq``
of the stream unless its ``event_id`` is already known, and hands each new
:class:`~mlops_hooks.server.stream.record.Record` to the ``deliver`` callback it was started
with, in ``seq`` order, on the event loop. The in-memory backend does all of that in-process; a
Redis backend does it in Redis so that several servers share one stream (every server's
``deliver`` sees every record, and ``Record.local`` says whether this server is the one that
accepted it).

The rest of the server (state, hub, hooks) only consumes records through ``deliver`` and asks
the backend for missed records (:meth:`Backend.replay`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mlops_hooks import events as ev
from mlops_hooks.server.stream.record import Record

__all__ = ["Backend", "Deliver", "Published"]


@dataclass(frozen=True, slots=True)
class Published:
    """What :meth:`Backend.publish` did: the event's ``seq``, and whether it was a duplicate."""

    seq: int
    duplicate: bool = False


Deliver = Callable[[Record], None]


@runtime_checkable
class Backend(Protocol):
    """Sequencing, ordered stream, replay and idempotency for one server (or a fleet)."""

    name: str

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` assigned so far."""
        ...

    async def start(
        self, deliver: Deliver, *, last_seq: int = 0, seen: Iterable[tuple[str, int]] = (),
        origin: str = "",
    ) -> None:
        """Start streaming records to ``deliver``.

        Args:
            deliver: Called once per new record, in ``seq`` order, on the event loop; must not
                block.
            last_seq: The highest ``seq`` known from history (numbering continues after it).
            seen: ``(event_id, seq)`` pairs known from history (idempotency survives restarts).
            origin: This server's identity, the same across its restarts (``""``: a new one
                per start). A shared backend marks the records this server published
                :attr:`Record.local`; an in-process backend publishes nothing else.
        """
        ...

    async def close(self) -> None:
        """Stop streaming and release resources."""
        ...

    async def publish(self, event: ev.Event) -> Published:
        """Sequence ``event`` (or recognise its ``event_id``) and stream it.

        Raises:
            ConnectionError: The backend cannot accept events right now.
        """
        ...

    async def replay(self, after: int, upto: int) -> list[Record] | None:
        """Records with ``after < seq <= upto``, in order; ``None`` if some are no longer kept."""
        ...

    def describe(self) -> dict[str, object]:
        """Facts for ``/healthz`` and ``/metrics`` (name, replay window, ...)."""
        ...
