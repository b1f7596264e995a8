"""Grader-pool sizing: scoring throughput vs the number of grader actors on a multi-node Ray cluster.

A simulated model judge answers after a fixed latency (200 ms by default), as a blocking
client (``judge_sync``: one call at a time per actor, like most SDK clients) and as an
async one (``judge_async``: the samples of a shard overlap inside one actor).
Batches of completions (one learner step's worth, or several learners' at once) are scored
by a :class:`rft.scoring.ray.RayExecutor` whose actors live on two grader nodes of a local
``ray.cluster_utils.Cluster`` (placed with a custom ``grader_node`` resource, as on a real
cluster), for pool sizes 1, 2, 4, 8. Prints completions/s, the speed-up over one actor and
the ideal (``actors / latency`` for the blocking judge), then the sizing rule with these numbers.
An async judge overlaps a whole shard inside one actor; time it on a large batch with
``--graders judge_async --batch 1024 --sizes 1,2,4``.

Run:  .venv/bin/python benchmarks/scale.py [--latency 0.2] [--batch 32] [--repeats 3]

This file is also the plugin that registers the two judges (actors load it by path).
"""

from __future__ import annotations

import sys

# Run as a script, this directory comes first on sys.path, and benchmarks/signal.py would stand in
# for the standard library's `signal` module (subprocess and asyncio import it). Take it off first.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import asyncio
import math
import statistics
import time
from pathlib import Path

import rft

LATENCY_S = 0.2


@rft.grader
def judge_sync(completion: str, latency: float = LATENCY_S) -> float:
    """A blocking judge call that takes ``latency`` seconds (a sync HTTP client)."""
    time.sleep(latency)
    return float(len(completion) % 2)


@rft.grader
async def judge_async(completion: str, latency: float = LATENCY_S) -> float:
    """The same judge through an async client: calls overlap inside one actor."""
    await asyncio.sleep(latency)
    return float(len(completion) % 2)


@rft.hookimpl
def rft_register_graders(register):
    register(judge_sync)
    register(judge_async)


def _throughput(executor, samples, repeats: int) -> float:
    executor.score(samples[:2])  # warm: actors loaded, first call made
    times = []
    for r in range(repeats):
        batch = [rft.Sample(completion=f"{s.completion} #{r}", item=s.item) for s in samples]  # new text: no cache hits
        t0 = time.perf_counter()
        executor.score(batch)
        times.append(time.perf_counter() - t0)
    return len(samples) / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=LATENCY_S, help="judge latency, seconds")
    ap.add_argument("--batch", type=int, default=32, help="completions per scored batch (one learner step)")
    ap.add_argument("--sizes", default="1,2,4,8", help="grader-pool sizes to time")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=16, help="max_concurrency of each actor (async judge)")
    ap.add_argument("--graders", default="judge_sync,judge_async", help="which judges to time")
    args = ap.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from rft.plugins import grader_set_from_config
    from rft.scoring import ScoringOptions
    from rft.scoring.ray import RayExecutor

    sizes = [int(s) for s in args.sizes.split(",")]
    plugin = str(Path(__file__).resolve())
    import socket

    from ray.util.state import get_actor

    with socket.socket() as sock:  # the dashboard (state API: which node each actor is on) on a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True, "dashboard_port": port}
    )
    for _ in range(2):  # two grader nodes; actors need the grader_node resource
        cluster.add_node(num_cpus=0, resources={"grader_node": max(sizes)})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    samples = [rft.Sample(completion=f"completion {i}", item={}) for i in range(args.batch)]
    rows = []
    try:
        for name in args.graders.split(","):
            gs = grader_set_from_config({"graders": [{"name": name, "latency": args.latency}], "plugins": [plugin]})
            for n in sizes:
                opts = ScoringOptions(
                    executor="ray",
                    num_workers=n,
                    cache=False,
                    default_timeout=None,
                    max_concurrency=args.concurrency,
                    actor_resources={"num_cpus": 0, "resources": {"grader_node": 1}},
                )
                with RayExecutor(gs, opts) as ex:
                    nodes = {get_actor(a._actor_id.hex()).node_id for a in ex.actors}
                    rows.append((name, n, len(nodes), _throughput(ex, samples, args.repeats)))
    finally:
        ray.shutdown()
        cluster.shutdown()

    print(
        f"\nscoring throughput, batch {args.batch} completions, judge latency {args.latency * 1000:.0f} ms, "
        f"actors spread over 2 grader nodes (max_concurrency {args.concurrency})\n"
    )
    print(f"{'grader':<12} {'actors':>6} {'nodes':>5} {'compl/s':>8} {'vs 1 actor':>10} {'ideal (sync)':>12}")
    base: dict[str, float] = {}
    for name, n, n_nodes, tput in rows:
        base.setdefault(name, tput)
        ideal = f"{n / args.latency:.1f}" if name == "judge_sync" else "-"
        print(f"{name:<12} {n:>6} {n_nodes:>5} {tput:>8.1f} {tput / base[name]:>9.2f}x {ideal:>12}")

    sync = {n: t for name, n, _, t in rows if name == "judge_sync"}
    per_actor = statistics.median(t / n for n, t in sync.items()) if sync else 1 / args.latency
    print(
        f"\nsizing rule: a blocking judge gives each actor ≈1/latency = {1 / args.latency:.1f} completions/s "
        f"(measured {per_actor:.1f}/s per actor here).\n"
        "  actors per learner = ceil(generation rate per learner × latency / overlap),\n"
        "  overlap = 1 for blocking graders; for async ones, the samples an actor has in flight (a whole\n"
        "  shard at once, up to what the judge's client or rate limit allows); add ~25 % headroom.\n"
        "  e.g. a learner producing 16 completions/s with a 200 ms judge needs "
        f"ceil(16 × 0.2 × 1.25) = {math.ceil(16 * 0.2 * 1.25)} blocking actors, or 1 async actor "
        "(16 × 0.2 = 3.2 calls in flight)."
    )


if __name__ == "__main__":
    main()
