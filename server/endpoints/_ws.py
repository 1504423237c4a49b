"""What both WebSocket endpoints (``/ws`` and ``/ws/publish``) do alike: refuse, police frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from mlops_hooks.protocol import MAX_MESSAGE_BYTES, CloseCode, problem
from mlops_hooks.server.security import Denied

__all__ = ["deny", "message_problem"]


async def deny(ws: WebSocket, denied: Denied) -> None:
    """Refuse a handshake with an HTTP status and a JSON body saying why."""
    response = JSONResponse(problem(denied.message), status_code=denied.status)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(response)
    else:  # pragma: no cover - servers without the denial-response extension
        await ws.close(code=CloseCode.POLICY_VIOLATION, reason=denied.message[:120])


def message_problem(message: Mapping[str, Any]) -> tuple[int, str] | None:
    """The close code and reason for a frame the server does not take, or ``None``."""
    text = message.get("text")
    if text is None:
        return CloseCode.UNSUPPORTED_DATA, "binary frames are not supported: send JSON text"
    if len(text) * 4 > MAX_MESSAGE_BYTES and len(text.encode()) > MAX_MESSAGE_BYTES:
        return CloseCode.MESSAGE_TOO_BIG, f"message over the {MAX_MESSAGE_BYTES // 1024} KiB limit"
    return None
