"""`ser-batch demo DIR` (what `make run` runs): the whole job on synthetic audio, timed step by step."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.featurize import featurize
from flows.score import score
from flows.train import train
from ser_batch import jobs
from ser_batch.config import DEFAULT_FEATURE_SET, TrainConfig
from ser_batch.demo import DEMO_CALLS, write_demo_archive, write_demo_calls

DEMO_TRAINING = TrainConfig(epochs=30)
"""The default model and split with a short budget: the synthetic voices are learnt in a few epochs."""


def run_demo(folder: str, *, dask_address: str | None, n_workers: int | None, started: float) -> dict[str, Any]:
    """Make a demo archive under FOLDER, featurize it, train a model, score demo calls; print where everything is.

    Archives already under FOLDER are kept, so a second run shows featurize skipping done files.
    ``started`` is the ``time.perf_counter()`` of the command's start (the start-up is timed too).
    Returns the score run's summary.
    """
    root = Path(folder)
    audio, features, model, recordings, scores = (
        str(root / name) for name in ("audio", "out", "model", "recordings", "scores")
    )
    steps: list[tuple[str, float]] = [("start-up: Prefect API, Dask workers", time.perf_counter() - started)]

    def step(label: str, action: Callable[[], Any]) -> Any:
        clock = time.perf_counter()
        result = action()
        steps.append((label, time.perf_counter() - clock))
        return result

    step("make the demo archive", lambda: _kept(audio) or write_demo_archive(audio))
    # the demo writes its archives a moment before: nothing of them is still being written (settle_s=0)
    step(
        "featurize it",
        lambda: featurize(source=audio, dest=features, dask_address=dask_address, n_workers=n_workers, settle_s=0),
    )
    step("train a model", lambda: train(features_dest=features, model_dir=model, config=DEMO_TRAINING))
    step("make demo call recordings", lambda: _kept(recordings) or write_demo_calls(recordings))
    summary = step(
        "score them",
        lambda: score(
            source=recordings,
            dest=scores,
            model_dir=model,
            dask_address=dask_address,
            channel_roles=["agent", "customer"],
            settle_s=0,
        ),
    )
    sql = jobs.calls_query(scores, summary["model_id"])
    table = step("query the calls table", lambda: jobs.query_result(sql))
    total = time.perf_counter() - started
    calls = ", ".join(f"{name} {what}" for name, (what, _) in DEMO_CALLS.items())
    bin_dir = os.path.relpath(Path(sys.executable).parent)
    bin_dir = str(Path(sys.executable).parent) if bin_dir.startswith("..") else bin_dir
    print(
        f"""
==== ser-batch demo: featurize -> train -> score in {total:.0f} s ====

The calls table: one row per recording and channel (channel 0 is the agent, 1 the customer: --channel-roles).
The recordings: {calls}, and one corrupt file (in {scores}/errors).

$ {bin_dir}/duckdb -c "{sql}"
{table}
Time per step:
"""
        + "\n".join(f"  {label:<38}{seconds:7.1f} s" for label, seconds in steps)
        + f"""

Where each table lives (Parquet; query with DuckDB, pandas or Dask):
  features     {features}/features/feature_set={DEFAULT_FEATURE_SET}/corpus=*/part-*.parquet   one row per clip
  augmented    {features}/augmented/feature_set={DEFAULT_FEATURE_SET}/...   training copies of labelled clips
  errors       {features}/errors/   why files could not be featurized
  model        {model}/   model.keras, metadata.json, confusion_matrix.png
  predictions  {scores}/predictions/call_date=*/   one row per scored window, by the call's date
  calls        {scores}/calls/call_date=*/   one row per recording channel
  errors       {scores}/errors/call_date=*/   recordings that could not be scored
  pictures     {scores}/plots/   emotion timelines of the angriest calls

THE DEMO MODEL MEANS NOTHING: it was trained on synthetic voices (glottal pulses through vowel
formants), not on speech, so its labels say nothing about real calls. To train a real one, featurize a labelled corpus kept
under its own file names (RAVDESS, CREMA-D, TESS, EmoDB, SAVEE; see the README), then train and score:
  ser-batch featurize /data/corpora features
  ser-batch train features model --split speaker        # honest accuracy on unseen voices
  ser-batch train features model-ship --split none      # the model to ship
  ser-batch score /data/calls scores --model model-ship

Next commands to try (ser-batch and duckdb are in {bin_dir}; `source {bin_dir}/activate` puts them on PATH):
  ser-batch plot-call {scores} {recordings}/call-0002.wav        # the angry call's timeline as a PNG
  ser-batch evaluate {features} --model {model}
  duckdb -c "SELECT * FROM read_parquet('{scores}/predictions/*/*.parquet', hive_partitioning=true) LIMIT 10"
  make run                                                       # again: featurize skips what is done
  prefect server start   # then, in another terminal, PREFECT_API_URL=http://127.0.0.1:4200/api make run
                         # and open http://127.0.0.1:4200/artifacts for each run's report"""
    )
    return summary


def _kept(folder: str) -> bool:
    path = Path(folder)
    return path.is_dir() and any(path.iterdir())
