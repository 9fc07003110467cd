"""Running sweep points: the worker function (one point = one method on one scenario variant),
and the engines that run many of them (in this process, a spawn process pool, or Ray tasks).

Every engine takes the same task dicts (:meth:`planner.sweep.spec.Point.task`) and yields the
same row dicts, so their tables agree; the caller appends rows as they come.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

from planner.scenario.errors import InputError, Problem

log = logging.getLogger(__name__)

_CACHE: OrderedDict[str, Any] = OrderedDict()  # scenario_key -> Instance, per worker process
_CACHE_SIZE = 4


def _instance(task: dict[str, Any]) -> Any:
    from planner.api import as_instance
    from planner.scenario.load import load_scenario
    from planner.sweep.spec import apply_overrides, models_dir

    key = task["scenario_key"]
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    doc = apply_overrides(task["document"], task["overrides"])
    with models_dir(task["base_dir"]):
        inst = as_instance(load_scenario(doc, name=task["label"]))
    _CACHE[key] = inst
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return inst


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Solve one point and score its plan; never raises (a failure is a row with its reason)."""
    from planner.api import solve
    from planner.metrics import evaluate_arrays
    from planner.plan import SOLVED
    from planner.report.compare import warm_heuristic

    warm_heuristic(task["method"])  # before the point's clock: the one-time compile is no cost
    t0 = time.perf_counter()
    row: dict[str, Any] = {
        "key": task["key"], "scenario": task["label"], "overrides": dict(task["overrides"]),
        "method": task["method"], "options": task["options"], "time_limit": task["time_limit"],
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        inst = _instance(task)
        res = solve(inst, task["method"], time_limit=task["time_limit"], **task["options"])
        if res.info.get("interrupted"):
            # the solver stopped on Ctrl-C: its cut-short row must not be stored (a resumed
            # sweep would reuse it for good); the user meant the sweep
            raise KeyboardInterrupt
        # bound and gap about the scenario's objective (a batch method's own go in words)
        status, bound, gap = res.scenario_claims()
        row.update(status=status, objective_name=inst.objective, bound=bound, gap=gap,
                   termination=res.own_claim(),
                   wall_s=res.wall_s)
        if res.plan is not None:
            m = evaluate_arrays(inst, res.plan)
            d = m.to_dict()
            row.update(
                # a plan that breaks a hard constraint is not a solution: it claims no objective
                objective=m.objective if status in SOLVED else None,
                makespan_s=m.makespan_s, bottleneck=m.bottleneck,
                cost_usd=m.cost, served=m.served, refused=m.refused,
                prefix_tokens_reused=m.prefix_tokens_reused,
                peak_link_utilization=max((v["utilization"] for v in d["links"].values()),
                                          default=0.0),
                peak_kv_memory_utilization=max((v["memory_utilization"]
                                                for v in d["clusters"].values()), default=0.0),
            )
            if task.get("replay", True):
                row.update(replay_row(inst, res.plan))
    except Exception as exc:  # noqa: BLE001 - a bad point is recorded, the sweep goes on
        msg = " | ".join(str(exc).splitlines()) or type(exc).__name__
        row.update(status="error", termination=f"{type(exc).__name__}: {msg}")
    row["point_wall_s"] = time.perf_counter() - t0
    return row


def replay_row(inst: Any, plan: Any) -> dict[str, Any]:
    """The replay's figures of a plan (:mod:`planner.simulate`, the scenario's own settings,
    from its summary): what the fluid figures leave out, arrivals above all (a what-if on the
    arrival rate moves only these). A replay that fails leaves them empty and says why in
    ``replay_error``."""
    from planner.simulate import simulate

    try:
        s = simulate(inst, plan).summary()
    except Exception as exc:  # noqa: BLE001 - the solve's row stands without its replay
        return {"replay_error": f"{type(exc).__name__}: {exc}"}
    return {"replay_makespan_s": s["makespan_s"], "replay_completed": s["completed"],
            "ttft_p50_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"],
            "tpot_p99_s": s["tpot_s"]["p99"], "e2e_p99_s": s["e2e_s"]["p99"],
            "preemptions": s["preemptions"], "goodput_fraction": s["goodput_fraction"]}


Tasks = list[dict[str, Any]]


def run_local(tasks: Tasks) -> Iterator[dict[str, Any]]:
    for t in tasks:
        yield run_point(t)


def _init_worker(level: int) -> None:
    """A spawned worker logs like its parent (same level, to stderr)."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def run_pool(tasks: Tasks, workers: int) -> Iterator[dict[str, Any]]:
    """A spawn process pool (never fork: solvers hold threads). At most ``2 * workers`` tasks are
    queued at once, so an interrupted sweep does not leave a long queue behind."""
    ctx = get_context("spawn")
    pending: set[Future] = set()
    it = iter(tasks)
    level = logging.getLogger().getEffectiveLevel()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(level,)) as pool:
        try:
            for t in it:
                pending.add(pool.submit(run_point, t))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(run_point, nxt))
        except BaseException:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def ray_plan(cpus: int, threads: int, workers: int | None) -> tuple[int, int]:
    """(threads per task, concurrent tasks) with threads x tasks <= cpus."""
    threads = max(1, min(threads, cpus))
    tasks = max(1, cpus // threads)
    if workers:
        tasks = min(tasks, workers)
    return threads, tasks


def run_ray(
    tasks: Tasks,
    threads: int = 1,
    workers: int | None = None,
    address: str | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Ray tasks on a local Ray started for the run (stopped after) or on the cluster at
    ``address``. Each task reserves ``threads`` CPUs and at most cores // threads run at once,
    so solver threads x concurrent tasks never exceed the cores Ray reports."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("the ray engine needs Ray: pip install 'planner[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
        if address:
            _check_reachable(address)
            try:
                ray.init(address=address, **kw)
            except Exception as exc:  # noqa: BLE001 (ConnectionError, auth and version errors)
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise InputError("--address", [Problem(
                    "--address", f"could not join the Ray cluster: {first}", address)]) from exc
        else:
            # "local": a Ray of our own, even when a cluster started by `ray start` is running
            ray.init(address="local", **kw)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads, concurrent = ray_plan(cpus, threads, workers)
        info = {"cpus": cpus, "threads": threads, "concurrent": concurrent,
                "address": address or "local"}
        log.info("ray: %(cpus)d CPUs, %(concurrent)d tasks x %(threads)d threads", info)
        if on_start:
            on_start(info)
        for t in tasks:
            t["options"] = _cap_threads(t["method"], t["options"], threads)
        remote = ray.remote(num_cpus=threads, max_retries=1)(run_point)
        it = iter(tasks)
        pending = [remote.remote(t) for t in _take(it, concurrent)]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
                pending.extend(remote.remote(t) for t in _take(it, 1))
    finally:
        if started:
            ray.shutdown()


def ray_host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address written ``HOST:PORT`` or ``ray://HOST:PORT`` (IPv6 in
    brackets); None for the other forms (``auto``, ``local``), which Ray resolves itself."""
    m = re.fullmatch(r"(?:ray://)?(?:\[([0-9A-Fa-f:.]+)\]|([^\s:/\[\]]+)):(\d{1,5})/?", address.strip())
    if not m:
        return None
    return (m.group(1) or m.group(2)), int(m.group(3))


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, with one line, when nothing listens at the address: Ray itself retries
    for minutes, printing a warning every few seconds."""
    target = ray_host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise InputError("--address", [Problem(
            "--address", f"no Ray cluster answers at {target[0]}:{target[1]}: {why}", address)]) from exc


def _take(it: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        t = next(it, None)
        if t is None:
            break
        out.append(t)
    return out


def _cap_threads(method: str, options: dict[str, Any], threads: int) -> dict[str, Any]:
    from planner.registry import get_method
    from planner.sweep.spec import SOLVER_THREAD_OPTIONS

    spec = get_method(method)
    out = dict(options)
    for name in SOLVER_THREAD_OPTIONS:
        if name in spec.options and isinstance(out.get(name), int) and out[name] > threads:
            out[name] = threads
    return out
