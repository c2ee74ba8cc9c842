"""The featurize flow's library calls in a plain loop on the same LocalCluster, without Prefect.

Usage: python benchmarks/plain_loop.py SOURCE DEST [--n-workers 2] [--feature-set seed268] [--shard-size 500]

The baseline of the orchestration-overhead row in ``throughput.py``: catalogue and plan,
the CLI's cluster (forked, warmed workers), one Dask task per shard running
``batch.featurize_shard``, reconcile. Prints one JSON line like the CLI's ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--n-workers", type=int, default=2)
    parser.add_argument("--feature-set", default="seed268")
    parser.add_argument("--shard-size", type=int, default=500)
    args = parser.parse_args()

    import dask
    from distributed import Client, LocalCluster
    from distributed.utils import get_mp_context

    from ser_batch.config import feature_config
    from ser_batch.features.extract import LAZY_MODULES, warm_up
    from ser_batch.jobs.featurize import featurize_shard
    from ser_batch.jobs.finish import mirror_dest
    from ser_batch.jobs.plan import plan_featurization

    config = feature_config(args.feature_set)
    # the CLI's cluster (flows.runner.local_cluster) without importing Prefect: same worker env, forked, warmed
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    dask.config.set(
        {
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
            "distributed.worker.multiprocessing-method": "forkserver",
        }
    )
    get_mp_context().set_forkserver_preload(["distributed", "numpy", *LAZY_MODULES])
    with (
        LocalCluster(n_workers=args.n_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.run(partial(warm_up, config))
        plan = plan_featurization(args.source, args.dest, config, shard_size=args.shard_size)
        shards = plan.shards_for(sum(client.nthreads().values()))  # as flows.runner.run_shards cuts them
        summaries = client.gather(client.map(featurize_shard, shards, dest=args.dest, config=config, pure=False))
        mirror_dest(args.dest, config, plan)
    print(
        json.dumps(
            {
                "featurized": sum(s.n_rows for s in summaries),
                "failed": sum(s.n_errors for s in summaries),
                "shards": len(shards),
                "wall_s": round(time.perf_counter() - started, 3),
            }
        )
    )


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
