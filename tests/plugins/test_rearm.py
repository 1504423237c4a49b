"""The background thread that gives a paused hook back at its time."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from mlops_hooks.plugins._support.rearm import rearm_at, release

pytestmark = pytest.mark.timeout(30)


class Hooked:
    def hook(self) -> str:
        return "called"


def wait_until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not re-armed in time"
        time.sleep(0.005)


def test_a_paused_hook_comes_back_at_its_time_not_before():
    obj = Hooked()
    obj.hook = None  # paused
    when = time.perf_counter() + 0.3
    rearm_at(obj, "hook", when)
    while True:  # not before its time, however late this thread gets to look
        hook = obj.hook  # read the hook, then the clock: the read was no later than `now`
        now = time.perf_counter()
        if now >= when:
            break
        assert hook is None, f"re-armed {when - now:.3f} s early"
        time.sleep(0.005)
    wait_until(lambda: "hook" not in vars(obj))
    assert obj.hook() == "called"


def test_earlier_deadlines_are_served_first_and_dead_callbacks_are_skipped():
    late, early, gone = Hooked(), Hooked(), Hooked()
    for obj in (late, early, gone):
        obj.hook = None
    now = time.perf_counter()
    rearm_at(late, "hook", now + 30)
    rearm_at(gone, "hook", now + 0.05)
    rearm_at(early, "hook", now + 0.1)
    del gone
    gc.collect()  # held weakly: nothing keeps it alive, and its entry is dropped
    wait_until(lambda: "hook" not in vars(early))
    assert late.hook is None  # its time has not come


def _child_rearms(queue) -> None:  # runs in a forked child
    obj = Hooked()
    obj.hook = None
    rearm_at(obj, "hook", time.perf_counter() + 0.05)
    deadline = time.monotonic() + 5
    while "hook" in vars(obj) and time.monotonic() < deadline:
        time.sleep(0.005)
    queue.put("hook" not in vars(obj))


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python 3.12+: threads
def test_a_forked_child_gets_its_own_thread():
    import multiprocessing

    parent = Hooked()
    parent.hook = None
    rearm_at(parent, "hook", time.perf_counter() + 60)  # the parent's thread is running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_rearms, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=10) is True
    finally:
        child.join(10)
        queue.close()
        queue.join_thread()
    assert child.exitcode == 0
    assert parent.hook is None  # the parent's schedule is untouched


def _rearm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mlops-hooks-rearm"]


def test_release_forgets_a_callbacks_rearms_and_ends_the_thread_when_none_is_left():
    first, second = Hooked(), Hooked()
    first.hook = second.hook = None
    rearm_at(first, "hook", time.perf_counter() + 60)
    rearm_at(second, "hook", time.perf_counter() + 60)
    (thread,) = _rearm_threads()
    release(first)
    assert thread.is_alive()  # the second still waits
    release(second)
    assert not thread.is_alive() and _rearm_threads() == []  # joined before returning
    assert first.hook is None and second.hook is None  # not re-armed: the caller does that
    rearm_at(first, "hook", time.perf_counter() + 0.01)  # a new run gets a new thread
    wait_until(lambda: "hook" not in vars(first))
    release(first)
    assert _rearm_threads() == []
