from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from ser_batch.errors import LeaseError
from ser_batch.storage import files
from ser_batch.storage.lease import check_lease_free, hold_lease, lease_uri, read_lease


def write_lease(dest: Path, **values: object) -> None:
    record = {
        "holder": "other-run",
        "job": "score",
        "host": "nightly-host",
        "pid": 4242,
        "started_at": time.time() - 60,
        "expires_at": time.time() + 240,
        **values,
    }
    path = Path(lease_uri(str(dest)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def test_a_second_run_is_refused_naming_the_holder(tmp_path) -> None:
    dest = str(tmp_path / "out")
    with hold_lease(dest, job="score") as lease:
        with pytest.raises(LeaseError, match=rf"a score run on host {socket.gethostname()} \(pid {os.getpid()}\)"):
            with hold_lease(dest, job="featurize"):
                pass
        with pytest.raises(LeaseError, match="its lease expiring at 20"):
            check_lease_free(dest)
        lease.check()
    assert read_lease(dest) is None  # released on exit
    with hold_lease(dest, job="featurize"):
        pass


def test_a_live_lease_of_another_host_blocks_until_wait_s_then_names_it(tmp_path) -> None:
    write_lease(tmp_path)
    now = [1000.0 + time.time()]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with pytest.raises(LeaseError, match="a score run on host nightly-host \\(pid 4242\\)"):
        with hold_lease(str(tmp_path), job="featurize", wait_s=12, clock=lambda: now[0] - 1000.0, sleep=sleep):
            pass
    assert sum(waits) == pytest.approx(12.0) and len(waits) == 3  # polls every 5 s, up to the deadline
    assert read_lease(str(tmp_path)).holder == "other-run"  # type: ignore[union-attr]


def test_a_waiting_run_takes_the_lease_once_the_holder_releases_it(tmp_path) -> None:
    dest = str(tmp_path)
    with ExitStack() as holder:
        holder.enter_context(hold_lease(dest, job="score"))
        released: list[float] = []

        def sleep(seconds: float) -> None:  # the hook: the first run ends while the second waits
            released.append(seconds)
            holder.close()

        with hold_lease(dest, job="featurize", wait_s=60, sleep=sleep) as lease:
            assert read_lease(dest) == lease.record and lease.record.job == "featurize"
        assert len(released) == 1


def test_an_expired_lease_is_taken_over(tmp_path) -> None:
    write_lease(tmp_path, expires_at=time.time() - 1)

    with hold_lease(str(tmp_path), job="featurize") as lease:
        assert read_lease(str(tmp_path)) == lease.record
        assert lease.record.holder != "other-run"


def test_the_lease_of_a_killed_run_on_this_machine_is_taken_over_at_once(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with hold_lease(str(tmp_path / "probe"), job="probe") as probe:
        processes = probe.record.processes  # this machine's boot and pid namespace
    assert processes
    write_lease(tmp_path, pid=int(dead.stdout), host=socket.gethostname(), processes=processes)

    with hold_lease(str(tmp_path), job="featurize") as lease:
        assert lease.record.pid == os.getpid()


def test_a_live_lease_of_a_process_on_this_machine_is_not_taken_over(tmp_path) -> None:
    with hold_lease(str(tmp_path / "probe"), job="probe") as probe:
        processes = probe.record.processes
    write_lease(tmp_path, pid=os.getppid(), host=socket.gethostname(), processes=processes)

    with pytest.raises(LeaseError, match=f"pid {os.getppid()}"):
        check_lease_free(str(tmp_path))


def test_an_unreadable_lease_file_is_taken_over(tmp_path) -> None:
    path = Path(lease_uri(str(tmp_path)))
    path.parent.mkdir(parents=True)
    path.write_text('{"holder": "cut sh')

    with hold_lease(str(tmp_path), job="featurize") as lease:
        assert read_lease(str(tmp_path)) == lease.record


def test_renewal_extends_the_lease_and_a_lease_taken_over_is_lost(tmp_path) -> None:
    now = [time.time()]
    with hold_lease(str(tmp_path), job="score", ttl_s=30, clock=lambda: now[0]) as lease:
        first = lease.record.expires_at
        now[0] += 20
        assert lease.renew() and lease.record.expires_at == pytest.approx(first + 20)
        write_lease(tmp_path, expires_at=now[0] + 300)  # another run took it over

        assert not lease.renew()
        with pytest.raises(LeaseError, match="lost its lease .* another run took it over"):
            lease.check()
    assert read_lease(str(tmp_path)).holder == "other-run"  # type: ignore[union-attr]  # not ours to release


def test_a_lease_not_renewed_before_its_expiry_fails_its_check(tmp_path) -> None:
    now = [time.time()]
    with hold_lease(str(tmp_path), job="score", ttl_s=30, clock=lambda: now[0]) as lease:
        now[0] += 31
        with pytest.raises(LeaseError, match="expired before it could be renewed"):
            lease.check()


def test_the_heartbeat_renews_the_lease_while_the_run_lasts(tmp_path) -> None:
    with hold_lease(str(tmp_path), job="score", ttl_s=0.3) as lease:
        first = read_lease(str(tmp_path))
        deadline = time.monotonic() + 10
        while read_lease(str(tmp_path)) == first and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the renewal's effect, not synchronising on it
        renewed = read_lease(str(tmp_path))
        assert renewed is not None and renewed.expires_at > first.expires_at  # type: ignore[union-attr]
        lease.check()


def test_create_exclusive_creates_once_and_versions_guard_replace_and_remove(tmp_path) -> None:
    uri = str(tmp_path / "x" / "lease.json")

    version = files.create_exclusive(uri, b"one")
    assert version is not None and files.create_exclusive(uri, b"two") is None
    assert files.read_versioned(uri) == (b"one", version)
    newer = files.replace_versioned(uri, b"three", version)
    assert newer is not None and newer != version
    assert files.replace_versioned(uri, b"four", version) is None
    assert not files.remove_versioned(uri, version)
    assert files.remove_versioned(uri, newer)
    assert files.read_versioned(uri) is None
    assert [p.name for p in (tmp_path / "x").iterdir()] == [".lease.json.lock"]
