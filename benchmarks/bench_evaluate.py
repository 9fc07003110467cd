"""Benchmark of the foundation: build the Instance and evaluate a plan for 1M synthetic requests
on 64 clusters in 4 datacenters (prefix caching on), one core. Prints the median of repeats.

    python benchmarks/bench_evaluate.py [--requests 1000000] [--clusters 64] [--repeat 5]

Protocol: one warm-up run, then ``--repeat`` timed runs; report the median and the spread; pin
one core with ``taskset -c 0`` when the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from planner import Plan, build_instance, load_scenario
from planner.metrics import evaluate_arrays


def scenario(n_requests: int, n_clusters: int, n_dcs: int = 4) -> dict:
    dcs = [f"dc{i}" for i in range(n_dcs)]
    roles = ["prefill", "decode", "mixed", "mixed"]
    accs = ["h100", "h200", "a100-80gb", "h20", "l40s"]
    return {
        "name": "bench",
        "model": "llama-3.1-8b",
        "prefix_caching": True,
        "datacenters": [
            {"name": d, "clusters": [
                {"name": f"c{k}", "role": roles[k % 4], "accelerator": accs[k % 5], "replicas": 1 + k % 8}
                for k in range(n_clusters) if k % n_dcs == i]}
            for i, d in enumerate(dcs)],
        "links": [{"between": [dcs[i], dcs[(i + 1) % n_dcs]], "bandwidth_gbps": 100 + 50 * i,
                   "latency_ms": 5 + i, "cost_per_gb": 0.01} for i in range(n_dcs)],
        "workload": {"synthetic": {"count": n_requests, "seed": 1, "arrival_rate": 1000,
                                   "prefix": {"groups": 256, "share": 0.5, "tokens": 512}}},
    }


def timed(fn, repeat: int):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--clusters", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    data = scenario(args.requests, args.clusters)
    sc, t_load = timed(lambda: load_scenario(data), args.repeat)
    inst, t_build = timed(lambda: build_instance(sc), args.repeat)
    rng = np.random.default_rng(0)
    p, d = np.nonzero(inst.valid_pairs)
    k = rng.integers(0, len(p), inst.n_requests)
    plan = Plan(p[k], d[k])
    m, t_eval = timed(lambda: evaluate_arrays(inst, plan), args.repeat)
    print(f"{args.requests:,} requests, {inst.n_clusters} clusters, {inst.n_links} links, "
          f"{len(inst.prefix_blocks):,} prefix block occurrences")
    print(f"{'step':<34} {'median s':>9} {'min s':>8} {'max s':>8}")
    for name, t in (("load + generate workload", t_load), ("build Instance", t_build),
                    ("evaluate (incl. plan check)", t_eval)):
        print(f"{name:<34} {statistics.median(t):>9.3f} {min(t):>8.3f} {max(t):>8.3f}")
    print(f"makespan {m.makespan_s:.4g} s ({m.bottleneck}), prefix tokens reused "
          f"{m.prefix_tokens_reused:,}")


if __name__ == "__main__":
    main()
