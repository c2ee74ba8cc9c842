from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile
from signals_gen import SIGNALS

SER_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ser-dev"
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def write_wav(tmp_path: Path) -> Callable[..., Path]:
    """Write a generated signal to tmp_path/<name>; returns its path."""

    def write(
        name: str,
        *,
        kind: str = "voice",
        duration_s: float = 1.0,
        sample_rate: int = 16_000,
        channels: int = 1,
        subtype: str = "PCM_16",
    ) -> Path:
        signal = SIGNALS[kind](duration_s, sample_rate)
        data = np.stack([signal * (0.5 + 0.5 * c) for c in range(channels)], axis=1) if channels > 1 else signal
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, data, sample_rate, subtype=subtype)
        return path

    return write


@pytest.fixture
def wav_file(request: pytest.FixtureRequest, write_wav: Callable[..., Path]) -> Path:
    """A speech-like WAV; parametrise indirectly with (duration_s, sample_rate)."""
    duration_s, sample_rate = getattr(request, "param", (1.0, 16_000))
    return write_wav(f"clip_{sample_rate}.wav", duration_s=duration_s, sample_rate=sample_rate)


@pytest.fixture
def ser_dev() -> Path:
    if not (SER_DEV / "MANIFEST.csv").exists():
        pytest.skip(f"real clips not available: {SER_DEV} is absent")
    return SER_DEV


LABELLED_NAMES = [
    "ravdess/Actor_01/03-01-05-01-01-01-01.wav",
    "ravdess/Actor_02/03-01-04-02-02-01-02.wav",
    "tess/YAF_fear/YAF_bath_fear.wav",
    "emodb/03a01Wa.wav",
    "crema/1001_DFA_ANG_XX.wav",
    "savee/DC/sa01.wav",
    'calls/agent 7 – café "quoted".wav',
]


@pytest.fixture
def archive(write_wav: Callable[..., Path], tmp_path: Path) -> Path:
    """A small archive: labelled clips of five corpora, an unknown name, and noise files."""
    for index, name in enumerate(LABELLED_NAMES):
        write_wav(
            f"archive/{name}",
            kind="voice",
            duration_s=0.6,
            sample_rate=(16_000, 22_050, 8_000)[index % 3],
        )
    (tmp_path / "archive" / "notes.txt").write_text("not audio, passed over")
    return tmp_path / "archive"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CAPABILITY_VERSION_3 = 0x20080522
_DAC_OVERRIDES = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


def _capabilities(data: ctypes.Array[_CapData] | None = None) -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    libc = ctypes.CDLL(None, use_errno=True)
    header, current = _CapHeader(_CAPABILITY_VERSION_3, 0), data if data is not None else (_CapData * 2)()
    if (libc.capset if data is not None else libc.capget)(ctypes.byref(header), current) != 0:
        raise OSError(ctypes.get_errno(), "capget/capset failed")
    return header, current


@contextmanager
def _without_root_override() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    _, data = _capabilities()
    saved = data[0].effective
    data[0].effective &= ~_DAC_OVERRIDES
    _capabilities(data)  # this thread only: Linux capabilities are per thread
    try:
        yield
    finally:
        data[0].effective = saved
        _capabilities(data)


@pytest.fixture
def unprivileged() -> Callable[[], AbstractContextManager[None]]:
    """``with unprivileged():`` runs its body with file permissions checked as for an ordinary user.

    CI runs as root, whom file modes do not stop. As root, the block runs without the
    capabilities that override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so the kernel
    checks modes as for anyone: a root-owned file of mode 0 cannot be read, a folder of mode
    0o500 not written. Not root: the block runs as it is.
    """
    return _without_root_override
