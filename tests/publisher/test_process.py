"""The publisher in whole processes: exit, memory, fork and multiprocessing, several publishers."""

from __future__ import annotations

import json

import pytest

from tests.publisher.support import free_port, marks, run_script

pytestmark = pytest.mark.timeout(90)


def test_server_never_up_the_script_ends_at_once_and_keeps_its_events_on_disk(tmp_path):
    url = f"ws://127.0.0.1:{free_port()}/ws"
    runs = tmp_path / "runs"
    result = run_script("""
        import mlops_hooks
        with mlops_hooks.track("never-up", total_epochs=2, steps_per_epoch=3,
                               run_id="never-up") as run:
            for epoch in range(2):
                run.epoch_start(epoch)
                for _ in range(3):
                    run.step(loss=0.5)
                run.epoch_end(epoch)
        print("training done")
    """, env={"MLOPS_HOOKS_URL": url, "MLOPS_HOOKS_DIR": str(runs)}, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "training done\n"
    kept = runs / "never-up" / "events.jsonl"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mlops-hooks: ") and "was never reached" in lines[0]
    assert url.replace("/ws", "/ws/publish") in lines[0] and "connection refused" in lines[0]
    assert f"kept in {kept.parent}" in lines[0]
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    types = [r["type"] for r in rows]
    assert types.count("training_completed") == 1 and types.count("training_progress") >= 3
    first = next(r for r in rows if r["type"] == "training_progress")
    assert first["stage"] == "data_preparation"
    assert {r["run_id"] for r in rows} == {"never-up"}
    assert all(r["event_id"] and r["timestamp"] for r in rows)
    assert len({r["event_id"] for r in rows}) == len(rows)


def test_a_server_that_went_away_is_waited_for_within_the_timeout_then_kept(server, tmp_path):
    runs = tmp_path / "runs"
    result = run_script("""
        import sys
        from mlops_hooks import emit, events as ev
        from mlops_hooks.manager import get_plugin_manager

        emit(ev.ActivityUpdate(run_id="gone", activity=ev.Activity(id="a0", title="#0")))
        assert get_plugin_manager().get_plugin("publisher").flush(10)  # the server was reached
        print("stop", flush=True)
        sys.stdin.readline()  # the test stops the server
        emit(ev.ActivityUpdate(run_id="gone", activity=ev.Activity(id="a1", title="#1")))
    """, env={"MLOPS_HOOKS_URL": server.ws_url, "MLOPS_HOOKS_DIR": str(runs),
              "MLOPS_HOOKS_FLUSH_TIMEOUT": "1"}, timeout=30, stdin_hook=server.stop)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "not delivered" in lines[0] and "within 1s at exit" in lines[0]
    assert "MLOPS_HOOKS_FLUSH_TIMEOUT" in lines[0] and f"kept in {runs / 'gone'}" in lines[0]
    rows = [json.loads(line) for line in (runs / "gone" / "events.jsonl").read_text().splitlines()]
    assert [r["activity"]["title"] for r in rows] == ["#1"]  # the delivered one is not kept


def test_the_exit_flush_delivers_the_end_of_a_run(shared_server):
    result = run_script("""
        import mlops_hooks
        with mlops_hooks.track("exit-flush", total_epochs=1, run_id="exit-flush") as run:
            run.step(loss=0.1)
        try:
            with mlops_hooks.track("exit-fail", run_id="exit-fail"):
                raise MemoryError("out of memory")
        except MemoryError:
            pass
    """, env={"MLOPS_HOOKS_URL": shared_server.ws_url})  # the script ends right after the events
    assert result.returncode == 0 and result.stderr == ""
    done = [r["type"] for r in shared_server.received("exit-flush")]
    assert done[-2:] == ["training_completed", "activity_update"]
    failed = [r for r in shared_server.received("exit-fail") if r["type"] == "training_failed"]
    assert len(failed) == 1 and failed[0]["error_code"] == "MEMORY_ERROR"


def test_100k_emits_with_the_server_down_keep_memory_bounded_and_spill_to_disk(tmp_path):
    runs = tmp_path / "runs"
    result = run_script("""
        import gc, json, psutil
        import mlops_hooks
        from mlops_hooks import events as ev
        from mlops_hooks.manager import get_plugin_manager

        process = psutil.Process()
        def emit(i):
            mlops_hooks.emit(ev.TrainingProgress(stage="model_training", progress=i % 101,
                                                 run_id="mem", message=f"step {i}"))
        for i in range(2_000):
            emit(i)
        gc.collect()
        before = process.memory_info().rss
        for i in range(100_000):
            emit(i)
            if i % 10_000 == 0:
                mlops_hooks.emit(ev.ActivityUpdate(run_id="mem",
                                 activity=ev.Activity(id=f"a{i}", title="epoch")))
        publisher = get_plugin_manager().get_plugin("publisher")
        publisher.flush(0.5)  # let the background thread spill
        gc.collect()
        status = publisher.status()
        print(json.dumps({"growth": process.memory_info().rss - before,
                          "buffered": status["buffered"], "dropped": status["dropped"]}))
    """, env={"MLOPS_HOOKS_URL": f"ws://127.0.0.1:{free_port()}/ws", "MLOPS_HOOKS_DIR": str(runs),
              "MLOPS_HOOKS_BUFFER": "5000", "MLOPS_HOOKS_FLUSH_TIMEOUT": "0"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["buffered"] <= 5000
    # keeping 100k progress events would take ~30 MB; the publisher holds 5,000 at most
    assert report["growth"] < 20 * 1024 * 1024, report
    # past the buffer the run goes to disk instead of being dropped; only what the training
    # thread emitted faster than the background thread could take it is dropped (counted)
    rows = [json.loads(line) for line in (runs / "mem" / "events.jsonl").read_text().splitlines()]
    assert len(rows) + report["dropped"] == 102_010
    assert len(rows) > 5000 and sum(r["type"] == "activity_update" for r in rows) == 10
    assert len({r["event_id"] for r in rows}) == len(rows)
    # the server was never reached: one line when the run went to disk, one at exit with the
    # count of dropped events
    lines = result.stderr.splitlines()
    assert "are written to" in lines[0] and str(runs) in lines[0], result.stderr
    assert len(lines) == 2 and "was never reached" in lines[1], result.stderr
    assert f"{report['dropped']} superseded progress/metrics event(s) dropped" in lines[1]


def test_a_fork_after_the_first_emit_works_in_the_child(shared_server):
    result = run_script("""
        import os, sys, warnings
        warnings.filterwarnings("ignore", ".*fork", DeprecationWarning)  # Python >= 3.12
        from mlops_hooks import events as ev
        from mlops_hooks.manager import get_plugin_manager

        pm = get_plugin_manager()
        def activity(run, i):
            return ev.ActivityUpdate(run_id=run, activity=ev.Activity(id=f"{run}{i}",
                                                                      title=f"#{i}"))
        pm.dispatch(activity("parent", 0))      # the parent's thread and socket exist now
        publisher = pm.get_plugin("publisher")
        assert publisher.flush(10)
        for i in range(1, 30):                  # some still queued or in flight at the fork
            pm.dispatch(activity("parent", i))
        pid = os.fork()
        if pid == 0:
            for i in range(40):
                pm.dispatch(activity("child", i))
            os._exit(0 if publisher.flush(10) and publisher.status()["acked"] == 40 else 3)
        for i in range(30, 60):
            pm.dispatch(activity("parent", i))
        _, code = os.waitpid(pid, 0)
        assert publisher.flush(10)
        print(os.waitstatus_to_exitcode(code), publisher.status()["acked"])
    """, env={"MLOPS_HOOKS_URL": shared_server.ws_url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "60"]
    assert marks(shared_server.received("child")) == [f"#{i}" for i in range(40)]
    assert marks(shared_server.received("parent")) == [f"#{i}" for i in range(60)]  # each once


def test_several_processes_publish_at_once_and_children_flush_at_their_exit(shared_server):
    result = run_script("""
        import multiprocessing as mp, warnings
        warnings.filterwarnings("ignore", ".*fork", DeprecationWarning)  # Python >= 3.12
        from mlops_hooks import emit, events as ev

        def rank(r):
            for i in range(100):
                emit(ev.TrainingProgress(stage="model_training", progress=i, run_id=f"rank{r}",
                                         message=f"#{i}"))
            emit(ev.TrainingCompleted(run_id=f"rank{r}"))
            # no flush here: the child's exit flushes (multiprocessing ends with os._exit)

        if __name__ == "__main__":
            emit(ev.TrainingProgress(stage="data_preparation", run_id="main", message="#0"))
            for method in ("fork", "spawn"):
                ctx = mp.get_context(method)
                procs = [ctx.Process(target=rank, args=(f"{method}{r}",)) for r in range(3)]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join(60)
                assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    """, env={"MLOPS_HOOKS_URL": shared_server.ws_url}, timeout=80)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for method in ("fork", "spawn"):
        for r in range(3):
            rows = shared_server.received(f"rank{method}{r}")
            assert marks(rows) == [f"#{i}" for i in range(100)], (method, r)
            assert rows[-1]["type"] == "training_completed"
    assert marks(shared_server.received("main")) == ["#0"]
