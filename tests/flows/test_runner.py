from __future__ import annotations

from types import SimpleNamespace

import pytest
from dask.tokenize import tokenize
from prefect.logging import disable_run_logger
from prefect.utilities.collections import visit_collection

from flows import isolation
from ser_batch.errors import RunError
from ser_batch.shards import FileInfo, Shard, shard_id


def test_prefect_and_dask_take_a_shard_as_one_value_named_by_its_id() -> None:
    # each task submission visits its parameters twice and hashes them: a shard's files must not be walked
    shard = Shard("abc", tuple(FileInfo(f"/a/{i}.wav", i, f"{i}:1") for i in range(500)))
    seen: list[object] = []
    visit_collection({"shard": shard}, visit_fn=seen.append)
    assert not any(isinstance(value, FileInfo) for value in seen)
    assert shard in seen
    assert tokenize(shard) == tokenize(Shard("abc", ())) != tokenize(Shard("abd", shard.files))


class FakeScheduler:
    """The two calls Isolation makes to the Dask scheduler's event log."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[float, dict]]] = {}

    def log_event(self, topic: str, msg: dict) -> None:
        self.events.setdefault(topic, []).append((0.0, msg))

    def get_events(self, topic: str) -> list[tuple[float, dict]]:
        return list(self.events.get(topic, []))


class FakeFuture:
    def __init__(self, task_run_id: str) -> None:
        self.task_run_id = task_run_id


class Died(Exception):
    def __init__(self, worker: str) -> None:
        self.last_worker = SimpleNamespace(address=worker)


def test_isolation_runs_a_dead_shard_again_as_its_state_says_until_the_file_that_kills_it_is_recorded(
    monkeypatch,
) -> None:
    monkeypatch.setattr(isolation, "_mark_crashed", lambda future, message: None)
    scheduler = FakeScheduler()
    guard = isolation.RunGuard(run="featurize-1", file_timeout_s=600)
    files = tuple(FileInfo(f"/a/{i}.wav", 1, f"{i}:1") for i in range(3))
    shard = Shard(shard_id(files, "f"), files)
    deaths = iter(range(100))

    def died(shard: Shard, *, begun: bool = True) -> list[Shard]:
        run = f"task-run-{next(deaths)}"
        if begun:
            scheduler.log_event(guard.begun_topic, {"task_run": run})
        return chosen.after_death(shard, FakeFuture(run), Died(f"tcp://w:{run}"))

    chosen = isolation.Isolation(scheduler, guard, fingerprint="f")
    with disable_run_logger():
        assert died(shard, begun=False) == [shard]  # only queued on the worker that died
        halves = died(shard)
        assert [len(half.files) for half in halves] == [2, 1]
        isolation.name_poison(scheduler, guard, files[0], "timed out: still running after 600 s")
        assert died(halves[0]) == [halves[0]]  # its task records the named file and does the rest
        smaller = died(halves[0])  # and then died on another file
        assert [s.files for s in smaller] == [(files[0],), (files[1],)]
        assert died(smaller[1]) == [smaller[1]]  # alone once: not yet proof
        assert isolation.poison_registry(scheduler, guard) == {
            isolation.file_key(files[0]): "timed out: still running after 600 s"
        }
        assert died(smaller[1]) == [smaller[1]]  # alone twice: named, for its task to record
        assert isolation.poison_registry(scheduler, guard)[isolation.file_key(files[1])].startswith("worker died")
        other_pass = isolation.RunGuard(run="augment-1", file_timeout_s=600)
        assert isolation.poison_registry(scheduler, other_pass) == {}  # another pass knows nothing of it


def test_isolation_stops_the_run_when_workers_die_and_nothing_completes(monkeypatch) -> None:
    monkeypatch.setattr(isolation, "_mark_crashed", lambda future, message: None)
    scheduler = FakeScheduler()
    chosen = isolation.Isolation(scheduler, isolation.RunGuard(run="score-1", file_timeout_s=None), fingerprint="f")
    shard = Shard("s", (FileInfo("/a/0.wav", 1, "0:1"), FileInfo("/a/1.wav", 1, "1:1")))
    with disable_run_logger():
        for index in range(isolation.MAX_WORKER_DEATHS):
            chosen.after_death(shard, FakeFuture(f"t{index}"), Died(f"tcp://w:{index}"))
        chosen.completed()  # a shard completed: the count starts again
        for index in range(isolation.MAX_WORKER_DEATHS):
            chosen.after_death(shard, FakeFuture(f"u{index}"), Died(f"tcp://v:{index}"))
        with pytest.raises(RunError, match=r"^21 workers died and no shard completed meanwhile"):
            chosen.after_death(shard, FakeFuture("last"), Died("tcp://v:last"))
