"""CBC's own account (planner/exact/_backends/rows.py): the bound read from its log is a valid
lower bound. The logs are CBC's lines from runs of `milp` on the 50-request benchmark instance
(benchmarks/bench_exact.py), where CP-SAT found a plan of makespan 3.04957."""

from __future__ import annotations

import pytest

from planner.exact._backends.rows import _low, cbc_bound, parse_cbc_log

KNOWN_PLAN = 3.04957  # a plan of the instance: no valid lower bound is above it

GAP_EXIT = """\
Cbc0010I After 33000 nodes, 4213 on tree, 3.0498571 best solution, best possible 3.0495115 (46.66 seconds)
Cbc0012I Integer solution of 3.0498 found by heuristic after 435144 iterations and 33055 nodes (46.73 seconds)
Cbc0011I Exiting as integer gap of 0.00028845685 less than 1e-10 or 0.01%
Cbc0001I Search completed - best objective 3.0497999999999, took 435158 iterations and 33057 nodes

Result - Optimal solution found (within gap tolerance)

Objective value:                3.04980000
Lower bound:                    3.050
Gap:                            0.00
"""

TIME_LIMIT = """\
Cbc0010I After 32000 nodes, 11038 on tree, 3.059 best solution, best possible 3.0438896 (55.95 seconds)
Cbc0020I Exiting on maximum time

Result - Stopped on time limit

Objective value:                3.05842857
Lower bound:                    3.044
Gap:                            0.00
"""

EXHAUSTED = """\
Cbc0010I After 100 nodes, 3 on tree, 5.7 best solution, best possible 5.6 (0.10 seconds)

Result - Optimal solution found

Objective value:                5.70000000
Lower bound:                    5.700
"""


def test_a_gap_exit_does_not_take_the_printed_lower_bound():
    # CBC printed "Lower bound: 3.050" above its own objective 3.0498 (and above a known plan):
    # the bound is the objective less the integer gap it exited on
    cbc = parse_cbc_log(GAP_EXIT)
    assert cbc["exit_gap"] == pytest.approx(0.00028845685 + 5e-12)  # rounded up
    status, bound = cbc_bound(cbc, 3.0498, 1e-4)
    assert status == "optimal"
    assert bound <= KNOWN_PLAN
    assert bound == pytest.approx(3.0498 - 0.00028845685, abs=1e-8)


def test_a_time_limit_bound_is_rounded_down():
    # the summary prints the bound with 3 decimals: 3.044 for 3.0438896
    cbc = parse_cbc_log(TIME_LIMIT)
    assert cbc["bound"] == pytest.approx(3.0435)
    status, bound = cbc_bound(cbc, 3.05842857, 1e-4)
    assert status == "feasible" and bound <= 3.0438896 and bound == pytest.approx(3.04388955)
    assert cbc_bound(cbc, 3.04389, 1e-4)[1] <= 3.04389 - 3e-5  # never within the cutoff margin


def test_an_exhausted_tree_is_optimal_up_to_the_cutoff_margin():
    # CBC prunes nodes within 1e-7 |f| + 1e-5 (+ 2e-5 near an integer) of its incumbent
    status, bound = cbc_bound(parse_cbc_log(EXHAUSTED), 5.7, 1e-4)
    assert status == "optimal" and bound == pytest.approx(5.7 - 3e-5 - 5.7e-7, abs=1e-12)


@pytest.mark.parametrize("text,value", [("3.050", 3.0495), ("3.0495115", 3.04951145), ("64", 63.5),
                                        ("1.25e+03", 1245.0), ("-2.5", -2.55),
                                        ("-0.000", -0.0005)])
def test_printed_bounds_lose_half_a_unit_of_their_last_digit(text, value):
    assert _low(text) == pytest.approx(value, abs=1e-12)


PRESOLVE_INFEASIBLE = """\
Problem MODEL has 8 rows, 9 columns and 24 elements
Coin0008I MODEL read with 0 errors
Option for timeMode changed from cpu to elapsed
Problem is infeasible - 0.00 seconds
Option for printingOptions changed from normal to all
Total time (CPU seconds):       0.00   (Wallclock seconds):       0.00
"""


def test_an_infeasibility_proven_in_presolve_is_infeasible():
    # CBC 2.10 prints no "Result" line when its presolve proves the model infeasible (a horizon
    # no plan meets); the run used to be reported as a time-out without a solution
    assert cbc_bound(parse_cbc_log(PRESOLVE_INFEASIBLE), None, 1e-4) == ("infeasible", None)


def test_pre_processing_saying_infeasible_is_not_a_proof():
    """CBC's pre-processing called a feasible model infeasible (a horizon at the fastest
    makespan): that line is no proof of infeasibility."""
    log = ("Continuous objective value is 7.73794e+07 - 0.00 seconds\n"
           "Cgl0000I Cut generators found to be infeasible! (or unbounded)\n"
           "Pre-processing says infeasible or unbounded\n")
    cbc = parse_cbc_log(log)
    assert "not trusted" in cbc["result"]
    assert cbc_bound(cbc, None, 1e-4) == ("error", None)


def test_cbc_proves_a_sub_second_makespan_within_the_tolerance():
    """Found by review: CBC prunes what cannot beat its incumbent by 3e-5 in its own units, so
    a 0.23-s optimum in seconds was left at gap 1.3e-4, `feasible` although the tree was
    exhausted. T is now in units of its domain bound when that is below a second. Three
    prompts of 100 tokens on two equal clusters: the optimum is 0.2 s (two on one), above every
    domain bound (the LP's 0.15 s), so only CBC's tree proves it."""
    from helpers import instance, run

    inst = instance([{"name": "m0"}, {"name": "m1"}], [{"prompt_tokens": 100}] * 3)
    res = run(inst, "milp", time_limit=20)
    assert res.objective == pytest.approx(0.2, rel=1e-12)
    assert res.info["domain_bound"] < 0.2 * (1 - 1e-3)
    assert res.status == "optimal" and res.gap <= 1e-4


def test_cbc_proves_a_sub_second_tie_break_of_served_without_a_horizon():
    """The same for `served` without a horizon (every request served, T minimised): the unit
    was set for `makespan` only (found by review), and the tie-break ended at gap 1.5e-4."""
    from helpers import instance, run

    inst = instance([{"name": "m0"}, {"name": "m1"}], [{"prompt_tokens": 100}] * 3,
                    objective="served")
    res = run(inst, "milp", time_limit=20)
    assert res.objective == 3 and res.status == "optimal"
    assert res.info["tie_break_gap"] <= 1e-4
