"""Real servers for end-to-end tests: a Dask cluster, a moto S3 server and a Prefect server.

Every service is a subprocess started as a user would start it, on a free port, polled
for readiness against a deadline, logged to a file (printed when a test fails) and
always terminated in teardown. Nothing here changes the test process's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from poison_hook import HOOK, HookedCluster
from signals_gen import voice

VENV_BIN = Path(sys.executable).parent
SER_BATCH = str(VENV_BIN / "ser-batch")
PREFECT = str(VENV_BIN / "prefect")
DASK = str(VENV_BIN / "dask")

# Variables that would make a child talk to something other than the fixtures' servers.
_LEAKY_ENV = ("AWS_", "PREFECT_", "SER_BATCH_", "DASK_")

_LOGS: list[Path] = []  # every service/CLI log of the session, printed on failure


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment minus AWS/Prefect/Dask/ser-batch settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_ENV)}
    env.update({"PYTHONUNBUFFERED": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"})
    env.update(extra or {})
    return env


def wait_for(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready\n{tail(log)}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001  (not up yet: refused, reset, 5xx ...)
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s\n{tail(log)}")


def tail(log: Path | None, n_chars: int = 6000) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace")
    return f"--- {log} ---\n{text[-n_chars:]}"


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local test URL)
        return 200 <= response.status < 300


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def start(name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path, cwd: Path | None = None) -> Service:
    log = log_dir / f"{name}.log"
    _LOGS.append(log)
    handle = open(log, "wb")  # noqa: SIM115 (the child owns it until teardown)
    proc = subprocess.Popen(  # noqa: S603
        list(argv), stdout=handle, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True
    )
    handle.close()
    return Service(name, proc, log)


def stop(service: Service, *, grace_s: float = 15.0) -> None:
    """SIGTERM the service's process group (dask worker nannies, server children), then SIGKILL."""
    proc = service.proc
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children left behind by a clean parent exit, too
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=5)


@dataclass
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    log: Path

    def summary(self) -> dict[str, Any]:
        """The run summary ``--json`` prints as the last JSON line of stdout."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"no JSON summary on stdout\n{self.stdout}")

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\nexit {self.returncode} after {self.elapsed_s:.1f} s\n--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-10000:]}"


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def numba_cache_dir(e2e_dir: Path) -> str:
    path = e2e_dir / "numba-cache"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture(scope="session")
def base_env(e2e_dir: Path, numba_cache_dir: str) -> dict[str, str]:
    """Hermetic environment for every child: its own PREFECT_HOME and numba cache."""
    home = e2e_dir / "prefect-home-cli"
    home.mkdir(exist_ok=True)
    return clean_env({"PREFECT_HOME": str(home), "NUMBA_CACHE_DIR": numba_cache_dir})


@pytest.fixture(scope="session")
def run_cli(e2e_dir: Path, base_env: dict[str, str]) -> Callable[..., CliResult]:
    """Run ``ser-batch ARGS`` as a user would; returns its exit status, output and wall time."""
    counter = iter(range(10_000))

    def run(
        args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 240, cwd: Path | None = None
    ) -> CliResult:
        argv = [SER_BATCH, *args]
        full_env = {**base_env, **(env or {})}
        log = e2e_dir / f"cli-{next(counter):03d}.log"
        _LOGS.append(log)
        started = time.monotonic()
        proc = subprocess.run(  # noqa: S603
            argv, capture_output=True, text=True, env=full_env, timeout=timeout_s, cwd=cwd or e2e_dir, check=False
        )
        result = CliResult(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, log)
        log.write_text(str(result))
        return result

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and item.get_closest_marker("integration") is not None:
        logs = "\n".join(tail(log, 4000) for log in _LOGS if log.exists())
        report.sections.append(("e2e service and CLI logs", logs))


# --- DEST layout ------------------------------------------------------------------------------------

_PART_FILE = re.compile(
    r"(?:features|augmented)/feature_set=[\w-]+/corpus=[a-z]+/part-[0-9a-f]{20}\.parquet"
    r"|errors/feature_set=[\w-]+/part-[0-9a-f]{20}\.parquet"
    # the lease's flock sidecar: it stays by design (removing a flock file races with its next holder);
    # the lease itself (_ser_batch/lease.json) is gone after a run
    r"|_ser_batch/\.lease\.json\.lock"
)


def _foreign_files(dest: Path | Sequence[str]) -> list[str]:
    names = [p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()] if isinstance(dest, Path) else dest
    return [name for name in names if not _PART_FILE.fullmatch(name)]


@pytest.fixture(scope="session")
def foreign_files() -> Callable[[Path | Sequence[str]], list[str]]:
    """``foreign_files(dest)``: what a featurize DEST holds besides part files of the documented layout
    (probes, temporaries, anything else); ``dest`` is a local folder, or the object keys under DEST relative to it."""
    return _foreign_files


# --- Dask -----------------------------------------------------------------------------------------


@dataclass
class DaskCluster:
    address: str
    scheduler: Service
    workers: list[Service] = field(default_factory=list)


@pytest.fixture(scope="session")
def dask_cluster(e2e_dir: Path, base_env: dict[str, str]) -> Iterator[DaskCluster]:
    """`dask scheduler` plus two single-threaded `dask worker` processes on localhost."""
    yield from _dask_cluster(e2e_dir / "dask", base_env)


@pytest.fixture
def own_dask_cluster(tmp_path: Path, base_env: dict[str, str]) -> Iterator[DaskCluster]:
    """A cluster for one test alone: the test may kill its workers."""
    yield from _dask_cluster(tmp_path / "dask", base_env)


@pytest.fixture(scope="module")
def poison_dask_cluster(tmp_path_factory: pytest.TempPathFactory, base_env: dict[str, str]) -> Iterator[HookedCluster]:
    """`dask scheduler` plus two 900 MiB `dask worker`s that fail on marked files the way poison files do.

    The workers preload tests/poison_hook.py (a test-only hook). Dask hands back a task whose worker died
    at once (allowed-failures 0), so each step of isolating a poison file costs one worker death.
    """
    root = tmp_path_factory.mktemp("poison-dask")
    hits = root / "poison-hits.log"
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0", "SER_BATCH_TEST_POISON_LOG": str(hits)}
    args = ["--memory-limit", "900MiB", "--preload", str(HOOK)]
    for cluster in _dask_cluster(root / "dask", base_env, worker_args=args, env=env):
        yield HookedCluster(cluster.address, hits)


@pytest.fixture
def start_dask_cluster(tmp_path: Path, base_env: dict[str, str]) -> Iterator[Callable[..., DaskCluster]]:
    """Factory: ``start_dask_cluster(env)`` starts a cluster for one test alone, its processes in ``base_env``
    plus ``env`` (e.g. a fault hook for the workers); every one started is stopped in teardown."""
    with contextlib.ExitStack() as stack:

        def start_cluster(env: Mapping[str, str] | None = None) -> DaskCluster:
            cluster = contextlib.contextmanager(_dask_cluster)(tmp_path / "dask", {**base_env, **(env or {})})
            return stack.enter_context(cluster)

        yield start_cluster


def _dask_cluster(
    log_dir: Path, base_env: dict[str, str], *, worker_args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[DaskCluster]:
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log_dir.mkdir(exist_ok=True, parents=True)
    env = {**base_env, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    scheduler = start(
        "dask-scheduler",
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=env,
        log_dir=log_dir,
    )
    cluster = DaskCluster(address, scheduler)
    try:
        wait_for(lambda: _port_open(port), timeout_s=60, what="dask scheduler", proc=scheduler.proc, log=scheduler.log)
        for i in range(2):
            cluster.workers.append(
                start(
                    f"dask-worker-{i}",
                    [
                        DASK,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"e2e-worker-{i}",
                        *worker_args,
                    ],
                    env=env,
                    log_dir=log_dir,
                )
            )
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield cluster
    finally:
        for service in [*cluster.workers, scheduler]:
            stop(service)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- moto S3 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server(e2e_dir: Path) -> Iterator[str]:
    """A moto S3 server (HTTP, server mode); yields its endpoint URL. Sets nothing globally."""
    yield from _moto_server(e2e_dir / "moto")


@pytest.fixture
def own_moto_server(tmp_path: Path) -> Iterator[str]:
    """A moto server for one test alone: the test may turn on its IAM authentication (``moto-api/reset-auth``)."""
    yield from _moto_server(tmp_path / "moto")


def _moto_server(log_dir: Path) -> Iterator[str]:
    port = free_port()
    log_dir.mkdir(exist_ok=True)
    moto = VENV_BIN / "moto_server"
    argv = (
        [str(moto), "-H", "127.0.0.1", "-p", str(port)]
        if moto.exists()
        else [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    )
    service = start("moto", argv, env=clean_env(), log_dir=log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: http_ok(f"{url}/moto-api/"), timeout_s=60, what="moto server", proc=service.proc, log=service.log
        )
        yield url
    finally:
        stop(service)


# --- Prefect server -----------------------------------------------------------------------------------


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    service: Service

    def env(self) -> dict[str, str]:
        """What a client process needs to talk to this server (and nothing else)."""
        return {"PREFECT_API_URL": self.api_url}

    def post(self, route: str, body: Mapping[str, Any] | None = None) -> Any:
        request = urllib.request.Request(  # noqa: S310
            f"{self.api_url}/{route.lstrip('/')}",
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read() or b"null")


@pytest.fixture(scope="session")
def prefect_server(e2e_dir: Path) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port with its own PREFECT_HOME (and database)."""
    port = free_port()
    home = e2e_dir / "prefect-home-server"
    home.mkdir(exist_ok=True)
    env = clean_env({"PREFECT_HOME": str(home)})
    service = start(
        "prefect-server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env,
        log_dir=home,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(
            lambda: http_ok(f"{api_url}/health"),
            timeout_s=120,
            what="prefect server",
            proc=service.proc,
            log=service.log,
        )
        yield PrefectServer(api_url, home, service)
    finally:
        stop(service)


# --- audio ------------------------------------------------------------------------------------------

# (file name, corpus its name parses to), two per known corpus plus unknown names.
CORPUS_NAMES: tuple[tuple[str, str], ...] = (
    ("03-01-05-01-02-01-12.wav", "ravdess"),
    ("03-01-03-02-01-02-07.wav", "ravdess"),
    ("YAF_bath_angry.wav", "tess"),
    ("OAF_back_sad.wav", "tess"),
    ("03a01Wa.wav", "emodb"),
    ("08b02Fb.wav", "emodb"),
    ("1001_DFA_ANG_XX.wav", "crema"),
    ("1012_IEO_HAP_HI.wav", "crema"),
    ("DC_a01.wav", "savee"),
    ("JK_sa03.wav", "savee"),
    ("meeting-0001.wav", "unknown"),
    ("call_2024_0002.wav", "unknown"),
)


def write_voice(path: Path, *, seed: int, sample_rate: int = 16_000) -> None:
    """A 1-2 s speech-like clip (``signals_gen.voice``) with a little noise, 16-bit PCM."""
    rng = np.random.default_rng(seed)
    duration_s = float(rng.uniform(1.0, 2.0))
    waveform = 1.5 * voice(duration_s, sample_rate, seed=seed, f0_hz=float(rng.uniform(110, 300)))
    waveform += 0.01 * rng.standard_normal(waveform.size).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, waveform, sample_rate, subtype="PCM_16")


def make_wavs(folder: Path, n: int = 10, *, seed: int = 0) -> dict[str, str]:
    """Write ``n`` short WAVs with corpus-convention names; returns {file name: expected corpus}."""
    if n > len(CORPUS_NAMES):
        raise ValueError(f"n {n} > {len(CORPUS_NAMES)} known names")
    written = {}
    for i, (name, corpus) in enumerate(CORPUS_NAMES[:n]):
        write_voice(folder / name, seed=seed * 1000 + i)
        written[name] = corpus
    return written


@pytest.fixture(scope="session")
def write_wavs() -> Callable[..., dict[str, str]]:
    """``write_wavs(folder, n=10, seed=0)``: the WAV generator, for module-scoped fixtures."""
    return make_wavs


@pytest.fixture(scope="session")
def write_clip() -> Callable[..., None]:
    """``write_clip(path, seed=0)``: one 1-2 s WAV, for tests that edit an archive between runs."""
    return write_voice


@pytest.fixture
def wav_archive(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Factory: ``wav_archive(folder=None, n=10)`` writes WAVs under tmp_path/audio by default."""

    def make(folder: Path | None = None, n: int = 10, *, seed: int = 0) -> dict[str, str]:
        return make_wavs(folder or tmp_path / "audio", n, seed=seed)

    return make


# --- ser-batch serve ------------------------------------------------------------------------------------


def deployment_exists(api_url: str, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/{name}", timeout=5) as response:  # noqa: S310
            return response.status == 200
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


@pytest.fixture
def ser_batch_serve(prefect_server: PrefectServer, base_env: dict[str, str], tmp_path: Path) -> Iterator[Service]:
    """`ser-batch serve` in the background against ``prefect_server``, once `featurize/featurize` is registered."""
    log_dir = tmp_path / "serve"
    log_dir.mkdir()
    env = {**base_env, **prefect_server.env()}
    service = start("ser-batch-serve", [SER_BATCH, "serve"], env=env, log_dir=log_dir, cwd=tmp_path)
    try:
        wait_for(
            lambda: deployment_exists(prefect_server.api_url, "featurize/featurize"),
            timeout_s=90,
            what="deployment featurize/featurize",
            proc=service.proc,
            log=service.log,
        )
        yield service
    finally:
        stop(service, grace_s=20)
