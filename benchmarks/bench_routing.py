"""Routing throughput of the live policies: N synthetic requests on 64 clusters, one core.

    taskset -c 0 /work/venv/bin/python benchmarks/bench_routing.py [--count 1000000] [--runs 3]
        [--fleet both|pool|pd] [--methods greedy,heatmap,dist_sched]

Fleets: ``pool`` = 64 identical mixed H100 clusters in one datacenter (list scheduling's
setting); ``pd`` = 64 clusters in 4 datacenters (per datacenter 6 prefill, 6 decode, 4 mixed;
H100/H200/A100/L40S), a ring of links, prefix groups. Times the method call only (the Instance is
built once, the evaluator is not run); prints the median of ``--runs`` runs. Each method is first
called once on a 2,000-request instance of the same fleet, untimed, so the numba JIT compile (or
the load of its on-disk cache) is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from planner import load_scenario  # noqa: E402
from planner.api import as_instance  # noqa: E402
from planner.registry import get_method  # noqa: E402


def scenario(fleet: str, count: int) -> dict:
    synth = {"count": count, "seed": 3, "arrival_rate": 5000,
             "prompt": {"median": 1200, "sigma": 1.0, "min": 16, "max": 32000},
             "output": {"median": 180, "sigma": 1.0, "min": 0, "max": 4000}}
    if fleet == "pool":
        dcs = [{"name": "dc0", "clusters": [
            {"name": f"m{k}", "role": "mixed", "accelerator": "h100", "replicas": 4}
            for k in range(64)]}]
        return {"name": "bench-pool", "model": "llama-3.1-8b", "datacenters": dcs,
                "links": [], "workload": {"synthetic": synth}}
    accel = ["h100", "h200", "a100-80gb", "l40s"]
    dcs = []
    for i in range(4):
        cl = []
        for k in range(6):
            cl.append({"name": f"d{i}-p{k}", "role": "prefill", "accelerator": accel[k % 4],
                       "replicas": 4})
            cl.append({"name": f"d{i}-d{k}", "role": "decode", "accelerator": accel[(k + 1) % 4],
                       "replicas": 4})
        for k in range(4):
            cl.append({"name": f"d{i}-m{k}", "role": "mixed", "accelerator": accel[k],
                       "replicas": 2})
        dcs.append({"name": f"dc{i}", "clusters": cl})
    links = [{"between": [f"dc{i}", f"dc{(i + 1) % 4}"], "bandwidth_gbps": 400,
              "latency_ms": 10} for i in range(4)]
    synth["prefix"] = {"groups": 256, "share": 0.5, "tokens": 768, "zipf": 1.1}
    synth["origin"] = {f"dc{i}": 0.25 for i in range(4)}
    return {"name": "bench-pd", "model": "llama-3.1-8b", "prefix_caching": True,
            "datacenters": dcs, "links": links, "workload": {"synthetic": synth}}


METHODS = "round_robin,random,greedy,lpt,heatmap,locality,dist_sched,cache_aware,bandwidth_aware"


def bench(fleet: str, count: int, runs: int, methods: list[str]) -> None:
    t0 = time.perf_counter()
    inst = as_instance(load_scenario(scenario(fleet, count)))
    build = time.perf_counter() - t0
    warm = as_instance(load_scenario(scenario(fleet, 2000)))
    print(f"fleet {fleet}: {inst.n_requests} requests, {inst.n_clusters} clusters "
          f"(scenario + Instance built in {build:.2f} s); median of {runs} runs, "
          "JIT warm-up excluded\n")
    print(f"| {'method':<16} | {'seconds':>8} | {'requests/s':>12} |")
    print(f"|{'-' * 18}|{'-' * 9}:|{'-' * 13}:|")
    for name in methods:
        spec = get_method(name)
        opts = spec.resolve({})
        spec.func(warm, **opts)  # JIT compile / cache load, untimed
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            spec.func(inst, **opts)
            times.append(time.perf_counter() - t)
        s = statistics.median(times)
        print(f"| {name:<16} | {s:>8.3f} | {inst.n_requests / s:>12,.0f} |", flush=True)
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--fleet", default="both", choices=("both", "pool", "pd"))
    ap.add_argument("--methods", default=METHODS)
    args = ap.parse_args()
    fleets = ("pool", "pd") if args.fleet == "both" else (args.fleet,)
    for fleet in fleets:
        bench(fleet, args.count, args.runs, args.methods.split(","))


if __name__ == "__main__":
    main()
