"""Benchmark of the exact methods: per size, seconds for the LP-relaxation bound and the local-search
start, model-build seconds, relax-and-fix seconds, solve seconds, objective, bound and gap per backend.

    python benchmarks/bench_exact.py                     # 50/200/1000 requests, every backend
    python benchmarks/bench_exact.py --sizes 200 --methods cpsat --time-limit 60
    python benchmarks/bench_exact.py --sizes 200 --seeds 1,2,3,4,5   # five workloads per size
    python benchmarks/bench_exact.py --big               # aggregated, 1M requests, 32 clusters

Instances: 8 clusters in 3 datacenters (prefill-only in dc-a, decode and mixed in dc-b and
dc-c, dc-a - dc-b - dc-c in a line so dc-a -> dc-c is two hops), bandwidth and KV memory sized
so that links and memory-time bind next to compute; the big one has 32 clusters in 4
datacenters. Run one backend at a time on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from planner import load_scenario
from planner.api import as_instance, solve


def card(role: str, replicas: int, ptps: float = 8000.0, dtps: float = 1500.0, kv_gb: float = 4.0,
         cost: float = 2.0, **kw) -> dict:
    return {"role": role, "replicas": replicas, "prefill_tokens_per_s": ptps,
            "decode_tokens_per_s": dtps, "max_batch_size": 32, "kv_capacity_gb": kv_gb,
            "cost_per_hour": cost, **kw}


def scenario(n: int, seed: int = 1, big: bool = False, objective: str = "makespan") -> dict:
    if not big:
        dcs = [
            {"name": "dc-a", "clusters": [
                {"name": "a-p1", **card("prefill", 2)}, {"name": "a-p2", **card("prefill", 2)},
                {"name": "a-m", **card("mixed", 1, ptps=6000, dtps=1000, kv_gb=2.0)}]},
            {"name": "dc-b", "clusters": [
                {"name": "b-d1", **card("decode", 2, kv_gb=2.4)},
                {"name": "b-d2", **card("decode", 2, kv_gb=2.4)},
                {"name": "b-m", **card("mixed", 2, ptps=5000, dtps=1200, kv_gb=3.2)}]},
            {"name": "dc-c", "clusters": [
                {"name": "c-m", **card("mixed", 2, ptps=7000, dtps=1400, kv_gb=4.8)},
                {"name": "c-d", **card("decode", 1, dtps=2000, kv_gb=1.6)}]},
        ]
        links = [{"between": ["dc-a", "dc-b"], "bandwidth_gbps": 3.0, "cost_per_gb": 0.02},
                 {"between": ["dc-b", "dc-c"], "bandwidth_gbps": 1.5, "cost_per_gb": 0.02}]
        origin = {"dc-a": 0.5, "dc-b": 0.3, "dc-c": 0.2}
        prefix = None
    else:
        names = ["north", "south", "east", "west"]
        dcs = []
        for j, d in enumerate(names):
            cl = []
            for k in range(8):
                role = ("prefill", "decode", "mixed", "decode")[k % 4]
                cl.append({"name": f"{d}-{k}", **card(role, 4 + (k % 3) * 2,
                                                       ptps=6000 + 1000 * j, dtps=1200 + 200 * (k % 2),
                                                       kv_gb=4.0 + j)})
            dcs.append({"name": d, "clusters": cl})
        links = [{"between": ["north", "south"], "bandwidth_gbps": 200},
                 {"between": ["north", "east"], "bandwidth_gbps": 100},
                 {"between": ["south", "west"], "bandwidth_gbps": 100},
                 {"between": ["east", "west"], "bandwidth_gbps": 50}]
        origin = {d: 0.25 for d in names}
        prefix = {"groups": 32, "share": 0.4, "tokens": 512, "zipf": 1.1}
    synth = {"count": n, "seed": seed, "arrival_rate": 50.0,
             "prompt": {"median": 1500, "sigma": 0.8, "min": 16, "max": 16000},
             "output": {"median": 200, "sigma": 0.9, "min": 0, "max": 2000},
             "origin": origin}
    if prefix:
        synth["prefix"] = prefix
    return {"name": f"bench-{n}", "model": {"kv_bytes_per_token": 131072}, "objective": objective,
            "prefix_caching": bool(prefix), "datacenters": dcs, "links": links,
            "workload": {"synthetic": synth}}


def row(size: str, method: str, res, build_s: float | None) -> str:
    def f(x, fmt=".6g"):
        return "-" if x is None else format(x, fmt)

    b = res.info.get("build_s", build_s)
    prep = res.info.get("prep_s")
    rf = res.info.get("relax_fix_s")
    solve_s = res.wall_s - (b or 0.0) - (prep or 0.0) - (rf or 0.0)
    by = res.info.get("bound_from", "")
    if by == "domain":
        by = f"domain:{res.info.get('domain_bound_by')}"
    elif by == "solver" and res.info.get("bisection_rounds"):
        by = "solver (CP-SAT min + bisection on T)"
    return (f"| {size} | {method} | {f(prep, '.2f')} | {f(b, '.2f')} | {f(rf, '.2f')} | "
            f"{f(solve_s, '.2f')} | {res.status} | "
            f"{f(res.objective)} | {f(res.bound)} | {f(res.gap, '.2e')} | {by} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="50,200,1000")
    ap.add_argument("--methods", default="cpsat,milp_ortools,milp_ortools:HIGHS,milp,greedy")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--big", action="store_true", help="aggregated on 1M requests, 32 clusters")
    ap.add_argument("--big-count", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seeds", default="1", help="workload seeds, comma-separated (one row each)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    import datetime
    import os
    import platform

    import ortools

    print(f"<!-- {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
          f"{platform.machine()} {os.cpu_count()} cores; python {platform.python_version()}; "
          f"ortools {ortools.__version__}; time limit {a.time_limit:g} s; "
          f"command: python benchmarks/bench_exact.py {' '.join(argv or sys.argv[1:])} -->")
    print("| size | method | LP bound + start s | build s | relax-fix s | solve s | status | objective "
          "| bound | gap | bound from |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    cases = [(f"{a.big_count} req / 32 cl", scenario(a.big_count, big=True), ["aggregated"])] \
        if a.big else [(f"{n} req / 8 cl" + (f" / seed {sd}" if a.seeds != "1" else ""),
                        scenario(int(n), seed=int(sd)), a.methods.split(","))
                       for n in a.sizes.split(",") for sd in a.seeds.split(",")]
    for size, sc, methods in cases:
        t0 = time.perf_counter()
        inst = as_instance(load_scenario(sc))
        inst_s = time.perf_counter() - t0
        print(f"<!-- {size}: instance built in {inst_s:.2f} s -->", flush=True)
        for m in methods:
            name, _, solver = m.partition(":")
            opts = {"solver": solver} if solver else {}
            if name != "greedy":
                opts["num_workers"] = a.workers
            res = solve(inst, method=name, time_limit=a.time_limit, **opts)
            print(row(size, m, res, None), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
