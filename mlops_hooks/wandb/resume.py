"""Where a resumed W&B-style run continues: its last step, read from the server.

``wandb.init(id=..., resume=...)`` continues a run; W&B's next step is the one after the last
it logged. The server knows it (``GET /api/runs/{run_id}``'s ``last_step``, docs/protocol.md),
so the shim asks it once, with a short timeout, before the run sends anything.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

from mlops_hooks._publisher.config import DEFAULT_URL, server_base

__all__ = ["RESUME_TIMEOUT", "last_step", "wants_resume"]

#: Seconds the shim waits for the server's answer (then the run starts at step 0).
RESUME_TIMEOUT = 3.0


def wants_resume(resume: object) -> bool:
    """Whether W&B's ``resume=`` asks to continue a run: True, allow, must or auto."""
    return resume is True or resume in ("allow", "must", "auto")


def last_step(run_id: str, timeout: float = RESUME_TIMEOUT) -> int | None:
    """The highest step the server holds for ``run_id``, or None (unknown run, no series).

    The server is ``MLOPS_HOOKS_URL``; the token is ``MLOPS_HOOKS_TOKEN`` (a publisher token
    also reads) or ``MLOPS_HOOKS_SUBSCRIBER_TOKEN``. A server that cannot answer is said on
    stderr once, and the run starts at step 0; never raises.
    """
    try:
        base = server_base(os.environ.get("MLOPS_HOOKS_URL", "").strip() or DEFAULT_URL)
        request = urllib.request.Request(f"{base}/api/runs/{urllib.parse.quote(run_id, safe='')}")
        token = (os.environ.get("MLOPS_HOOKS_TOKEN", "").strip()
                 or os.environ.get("MLOPS_HOOKS_SUBSCRIBER_TOKEN", "").strip())
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read(1 << 20))
        step = body["run"].get("last_step")
        return step if isinstance(step, int) and not isinstance(step, bool) and step >= 0 \
            else None
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # an unknown run starts at 0, silently (W&B's "allow")
            sys.stderr.write(f"mlops_hooks.wandb: resume: the server answered {exc.code}; "
                             f"run {run_id} continues from step 0\n")
        return None
    except Exception as exc:  # the server away, a bad URL: the run still starts
        sys.stderr.write(f"mlops_hooks.wandb: resume: could not read run {run_id}'s last step "
                         f"({exc}); it continues from step 0\n")
        return None
