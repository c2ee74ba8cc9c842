"""When each phase of a ``ser-batch`` run starts and ends, in seconds since the process started.

Usage: python benchmarks/cli_timeline.py featurize SOURCE DEST [any ser-batch featurize options]

Runs ``flows.cli.main`` with the temporary API's boot, the LocalCluster's start and the flow
call wrapped to print a timestamp on stderr: when the API server is spawned and answers,
when the cluster starts and is warm, when the flow is called and returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flows.api as api  # noqa: E402
import flows.cli as cli  # noqa: E402


def mark(event: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.2f} s] {event}", file=sys.stderr, flush=True)


def timed(function: Callable[..., Any], before: str | None, after: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            mark(before)
        result = function(*args, **kwargs)
        mark(after)
        return result

    return wrapper


if __name__ == "__main__":
    mark("imports done")
    api._Server._spawn = timed(api._Server._spawn, None, "API server spawned")
    api._Server._boot = timed(api._Server._boot, None, "API server answers")
    cli._start_featurize_cluster = timed(cli._start_featurize_cluster, "cluster start", "cluster ready and warm")
    cli._featurize = timed(cli._featurize, "flow called", "flow returned")
    status = cli.main(sys.argv[1:])
    mark("exit")
    sys.exit(status)
