"""Bring your own encoder: frame embeddings of a pretrained ONNX model, pooled over time (pure given the model).

An ``onnx`` feature set (``ser_batch.config.EncoderFeatureConfig``) runs a model the user
exported, e.g. WavLM or emotion2vec (README, "Bring your own encoder"), with onnxruntime on the
CPU. The contract of the model:

* one input: the mono float32 waveform at the set's ``sample_rate`` (16 kHz unless stated),
  in [-1, 1], shape ``(1, n_samples)`` with ``n_samples`` free;
* the output taken (its first, or the one named): frame embeddings ``(1, T, D)`` or ``(T, D)``.

``encoder_vector`` feeds a clip in near-equal chunks of at most ``chunk_s`` seconds (the memory of
self-attention grows with the square of the chunk's length) and returns
``[mean over T, std over T]`` of all the chunks' frames: ``2 * D`` float32 values.

The model bytes come from ``ser_batch.storage.load_encoder``, which reads the file, checks its
SHA-256 and keeps one ``OnnxEncoder`` per file in each process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ser_batch.config import EncoderFeatureConfig
from ser_batch.errors import AudioError, ConfigError

FrameEncoder = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""A loaded encoder: mono float32 waveform ``(n,)`` -> frame embeddings ``(T, D)`` float32."""

_PROBE_S = 1.0  # the probe clip run once when a model is loaded, to learn D and check the output's rank


def encoder_names(config: EncoderFeatureConfig) -> list[str]:
    """Column names of an encoder set's vector: ``enc_mean_0000``.. then ``enc_std_0000``.. (``2 * n_dims``).

    >>> from ser_batch.config import EncoderFeatureConfig
    >>> config = EncoderFeatureConfig(name="onnx-" + "0" * 12, model_uri="m.onnx", sha256="0" * 64, n_dims=2)
    >>> encoder_names(config)
    ['enc_mean_0000', 'enc_mean_0001', 'enc_std_0000', 'enc_std_0001']
    """
    return [f"enc_{stat}_{i:04d}" for stat in ("mean", "std") for i in range(config.n_dims)]


def encoder_chunks(n_samples: int, config: EncoderFeatureConfig) -> list[tuple[int, int]]:
    """``(start, stop)`` of the near-equal chunks a clip of ``n_samples`` is encoded in.

    As few chunks as keep each at most ``chunk_s`` seconds, their lengths differing by at most
    one sample: no short remainder that the model would see with too little context.

    >>> from ser_batch.config import EncoderFeatureConfig
    >>> config = EncoderFeatureConfig(name="onnx-" + "0" * 12, model_uri="m.onnx", sha256="0" * 64, n_dims=2,
    ...                               chunk_s=1.0)
    >>> encoder_chunks(40_000, config)
    [(0, 13333), (13333, 26667), (26667, 40000)]
    """
    longest = max(1, round(config.chunk_s * config.sample_rate))
    n_chunks = max(1, math.ceil(n_samples / longest))
    edges = np.linspace(0, n_samples, n_chunks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def pool_frames(frames: NDArray[np.floating]) -> NDArray[np.float32]:
    """``[mean over T, std over T]`` of frame embeddings ``(T, D)``: shape ``(2 * D,)``, float32, NaN/inf -> 0.

    Raises:
        AudioError: if there are no frames (``T == 0``).

    >>> pool_frames(np.array([[1.0, 2.0], [3.0, 2.0]]))
    array([2., 2., 1., 0.], dtype=float32)
    """
    if frames.shape[0] == 0:
        raise AudioError("the encoder returned no frames for this clip")
    frames = frames.astype(np.float64)
    pooled = np.concatenate([frames.mean(axis=0), frames.std(axis=0)])
    return np.nan_to_num(pooled, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def encoder_vector(
    waveform: NDArray[np.float32], config: EncoderFeatureConfig, encoder: FrameEncoder
) -> NDArray[np.float32]:
    """Encode a clip chunk by chunk (``encoder_chunks``) and pool all its frames (``pool_frames``).

    Args:
        waveform: mono samples at ``config.sample_rate``, shape ``(n,)``, float32, already validated.
        config: the encoder set.
        encoder: the loaded model of ``config`` (``ser_batch.storage.load_encoder``).

    Returns:
        float32 array of shape ``(2 * config.n_dims,)``.

    Raises:
        AudioError: if a chunk's frames are not ``(T, n_dims)``, or there are none.
    """
    frames = []
    for start, stop in encoder_chunks(waveform.size, config):
        chunk = encoder(np.ascontiguousarray(waveform[start:stop]))
        if chunk.ndim != 2 or chunk.shape[1] != config.n_dims:
            raise AudioError(f"the encoder returned frames of shape {chunk.shape}; expected (T, {config.n_dims})")
        frames.append(chunk)
    return pool_frames(np.concatenate(frames))


class OnnxEncoder:
    """An ONNX model as a ``FrameEncoder``: one onnxruntime session on the CPU, one intra-op thread.

    Dask runs one worker process per core, so each session keeps to one thread, as BLAS does in
    ``ser_batch.jobs``. Built from the file's bytes; its inputs and outputs are checked at once
    and the model is run on a one-second probe, so a model that breaks the contract fails when
    loaded, in one line naming the file, not on every clip.

    Args:
        data: the ONNX file's bytes.
        uri: where they came from, for messages.
        sample_rate: the rate the model takes (Hz), for the probe's length.
        output: the output to take as frame embeddings; None: the model's first.

    Raises:
        ConfigError: ``<uri>: <what is wrong>``: not an ONNX model, not one float input of rank 2,
            no such output, or an output that is not ``(1, T, D)`` / ``(T, D)``.
    """

    def __init__(self, data: bytes, uri: str, *, sample_rate: int, output: str | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no per-session notices in worker logs
        try:
            self._session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own untyped exceptions for unreadable models
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{uri}: not a readable ONNX model ({reason[:200]})") from None
        self.uri = uri
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ConfigError(f"{uri}: the model has {len(inputs)} inputs; expected one, the waveform (1, n_samples)")
        if inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 2:
            raise ConfigError(
                f"{uri}: input {inputs[0].name!r} is {inputs[0].type} of rank {len(inputs[0].shape)}; "
                "expected tensor(float) of shape (1, n_samples)"
            )
        self.input_name = inputs[0].name
        names = [item.name for item in self._session.get_outputs()]
        if output is not None and output not in names:
            raise ConfigError(f"{uri}: no output {output!r}; the model's outputs are {names}")
        self.output_name = output or names[0]
        probe = 0.1 * np.sin(2 * np.pi * 220.0 * np.arange(round(_PROBE_S * sample_rate)) / sample_rate)
        try:
            self.n_dims = int(self(probe.astype(np.float32)).shape[1])
        except AudioError as error:
            raise ConfigError(f"{uri}: {error} (a one-second probe at {sample_rate} Hz)") from None

    def __call__(self, waveform: NDArray[np.float32]) -> NDArray[np.float32]:
        """Frame embeddings ``(T, D)`` float32 of a mono waveform ``(n,)``.

        Raises:
            ConfigError: if the output is not ``(1, T, D)`` or ``(T, D)``.
            AudioError: if onnxruntime fails on this input (e.g. shorter than the model's first frame).
        """
        feed: dict[str, Any] = {self.input_name: waveform.reshape(1, -1)}
        try:
            (frames,) = self._session.run([self.output_name], feed)
        except Exception as error:  # onnxruntime's runtime errors share no importable base class
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise AudioError(f"the encoder failed on {waveform.size} samples ({reason[:200]})") from None
        frames = np.asarray(frames)
        if frames.ndim == 3 and frames.shape[0] == 1:
            frames = frames[0]
        if frames.ndim != 2:
            raise ConfigError(
                f"{self.uri}: output {self.output_name!r} has shape {frames.shape}; expected (1, T, D) or (T, D)"
            )
        return frames.astype(np.float32, copy=False)
