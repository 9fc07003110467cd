"""Benchmark of the replay: 100k synthetic requests on 32 replicas (two datacenters, each with 8
prefill and 8 decode H100 replicas, one 100 Gbps link, prefix caching on), one core.

    taskset -c 0 python benchmarks/bench_simulate.py [--requests 100000] [--rate 250] [--repeat 1]
        [--set queue=sjf --set preemption=swap ...]

Prints the placement time (greedy), the replay's wall time, events per second, and the replay's
figures beside the fluid makespan (its lower bound).
"""

from __future__ import annotations

import argparse
import statistics
import time

from planner import build_instance, load_scenario, solve
from planner.metrics import evaluate_arrays
from planner.simulate import simulate


def scenario(n_requests: int, rate: float) -> dict:
    def dc(name: str) -> dict:
        return {"name": name, "clusters": [
            {"name": f"{name}-p", "role": "prefill", "accelerator": "h100", "replicas": 8},
            {"name": f"{name}-d", "role": "decode", "accelerator": "h100", "replicas": 8}]}

    return {
        "name": "bench-simulate",
        "model": "llama-3.1-8b",
        "prefix_caching": True,
        "datacenters": [dc("east"), dc("west")],
        "links": [{"between": ["east", "west"], "bandwidth_gbps": 100, "latency_ms": 30}],
        "workload": {"synthetic": {
            "count": n_requests, "seed": 3, "arrival_rate": rate,
            "prompt": {"median": 1200, "sigma": 1.0, "min": 16, "max": 32000},
            "output": {"median": 180, "sigma": 1.0, "min": 0, "max": 4000},
            "prefix": {"groups": 64, "share": 0.5, "tokens": 768},
            "origin": {"east": 0.5, "west": 0.5}}},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=250.0, help="arrivals per second")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    settings = dict(s.split("=", 1) for s in args.set)
    inst = build_instance(load_scenario(scenario(args.requests, args.rate)))
    t0 = time.perf_counter()
    plan = solve(inst, method="greedy").plan
    t_place = time.perf_counter() - t0
    walls = []
    rep = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rep = simulate(inst, plan, **settings)
        walls.append(time.perf_counter() - t0)
    assert rep is not None
    s = rep.summary()
    fluid = evaluate_arrays(inst, plan).makespan_s
    wall = statistics.median(walls)
    print(f"requests {inst.n_requests}, replicas {int(inst.replicas.sum())}, settings {settings}")
    print(f"placement (greedy) {t_place:.2f} s; replay median {wall:.2f} s over {len(walls)} "
          f"run(s) (min {min(walls):.2f}, max {max(walls):.2f}); {s['events']} events, "
          f"{s['events'] / wall:,.0f} events/s")
    print(f"makespan {s['makespan_s']:.1f} s (fluid bound {fluid:.1f} s), completed "
          f"{s['completed']}, preemptions {s['preemptions']}, memory ok {s['memory_ok']}")
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        lat = s[key]
        print(f"  {key:<7} p50 {lat['p50']:.4g}  p90 {lat['p90']:.4g}  p99 {lat['p99']:.4g}")


if __name__ == "__main__":
    main()
