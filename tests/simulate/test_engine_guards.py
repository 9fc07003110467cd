"""The replay's reading of a plan's order, and its guards against times it cannot represent."""

from __future__ import annotations

import logging

from planner import as_instance, load_scenario, solve
from planner.simulate.config import ReplayConfig
from planner.simulate.engine import Simulator


def test_order_ranks_only_requests_decoded_on_the_named_cluster(contract_scenario, caplog):
    # a cluster key ranked any request it listed, wherever it decoded, while a replica key
    # ignored them: both now ignore (and log) requests decoded elsewhere
    inst = as_instance(load_scenario(contract_scenario))
    plan = solve(inst, "round_robin").plan  # r1 on ed, r2 on wd, r3 on ed
    plan.order = {"wd": [0, 1], "ed#0": [2, 1]}
    with caplog.at_level(logging.WARNING, logger="planner.simulate.engine"):
        sim = Simulator(inst, plan, ReplayConfig())
    assert sim.rank == [-1, 1, 0] and sim.pin == [-1, -1, sim.cluster_reps[1][0]]
    assert [r.getMessage() for r in caplog.records] == [
        "plan order wd lists 1 requests it does not decode (first: index 0): ignored",
        "plan order ed#0 lists 1 requests it does not decode (first: index 1): ignored"]
