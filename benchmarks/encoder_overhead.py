"""What the ONNX encoder path costs by itself: featurizing one 2.4 s clip, tiny encoder vs ``stats8k``.

    .venv/bin/python benchmarks/encoder_overhead.py [--repeats 200] [--model wavlm-base-plus.onnx]

The encoder is the tests' tiny model (tests/encoder_gen.py, needs ``onnx``: frames of 320 samples,
one 320 x 8 projection, tanh), so its time is the path's overhead (resampling an 8 kHz clip to
16 kHz, one onnxruntime call on one thread, pooling), not the cost of a real encoder, which is
its own model's: time yours with ``--model`` (a 16 kHz encoder exported as the README says).
Both run on one thread, as on a Dask worker. Prints the median time per clip (ms).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from encoder_gen import frame_encoder, weights  # noqa: E402

from ser_batch.config import EncoderFeatureConfig, encoder_set_name, feature_config  # noqa: E402
from ser_batch.demo import synthetic_clip  # noqa: E402
from ser_batch.features import OnnxEncoder, feature_vector, resample  # noqa: E402


def median_ms(run, repeats: int) -> float:
    run()  # warm: lazy imports, numba kernels, the session's first call
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--model", type=Path, help="also time this ONNX encoder (16 kHz input)")
    args = parser.parse_args()
    clip16 = synthetic_clip("angry", np.random.default_rng(0), duration_s=2.4)
    clip8 = resample(clip16, 16_000, 8_000, quality="soxr_hq")  # a telephone clip, as a call centre has it
    stats = feature_config("stats8k")
    encoder = OnnxEncoder(frame_encoder(weights(8)), "tiny.onnx", sample_rate=16_000)
    onnx = EncoderFeatureConfig(name=encoder_set_name("0" * 64), model_uri="tiny.onnx", sha256="0" * 64, n_dims=8)
    with threadpool_limits(limits=1):
        rows = {
            "stats8k (8 kHz clip)": median_ms(lambda: feature_vector(clip8, 8_000, stats), args.repeats),
            "tiny onnx encoder (8 kHz clip resampled to 16 kHz)": median_ms(
                lambda: feature_vector(
                    resample(clip8, 8_000, 16_000, quality="soxr_hq"), 16_000, onnx, encoder=encoder
                ),
                args.repeats,
            ),
            "tiny onnx encoder, the onnxruntime call alone": median_ms(lambda: encoder(clip16), args.repeats),
        }
        if args.model is not None:
            own = OnnxEncoder(args.model.read_bytes(), str(args.model), sample_rate=16_000)
            rows[f"{args.model.name}, the onnxruntime call alone"] = median_ms(lambda: own(clip16), args.repeats)
    for name, ms in rows.items():
        print(f"{name:<55} {ms:7.2f} ms per 2.4 s clip")


if __name__ == "__main__":
    main()
