"""Method options: unknown names, wrong types and out-of-range values are OptionErrors."""

from __future__ import annotations

import pytest

from planner.registry import get_method
from planner.scenario.errors import OptionError


@pytest.mark.parametrize(("method", "options", "expected"), [
    ("cpsat", {"rel_gap": -1}, "rel_gap: must not be negative (method cpsat)"),
    ("cpsat", {"rel_gap": "2"}, "rel_gap: must be at most 1"),
    ("cpsat", {"resolution": 0}, "resolution: must be positive"),
    ("cpsat", {"num_workers": -3}, "num_workers: must not be negative"),
    ("cpsat", {"bisect_min_share": 5}, "bisect_min_share: must be at most 1"),
    ("heatmap", {"prefill_buckets": "0"}, "prefill_buckets: must be positive"),
    ("batch_cpsat", {"segments": 0}, "segments: must be positive"),
    ("bandwidth_aware", {"weight": -1}, "weight: must not be negative"),
    ("milp", {"time_limit": "inf"}, "time_limit: must be finite"),
    ("greedy", {"fast": "maybe"}, "fast: bad value for option of method greedy"),
    ("heatmap", {"cost": "fast"}, "cost: expected one of latency, load (method heatmap)"),
    ("cache_aware", {"style": "foo"}, "style: expected one of llmd, dynamo"),
    ("dist_sched", {"load": "foo"}, "load: expected one of requests, seconds"),
    ("batch_cpsat", {"objective": "foo"}, "objective: expected one of makespan, mean_completion"),
    ("aggregated", {"mode": "foo"}, "mode: expected one of lp, milp"),
    ("cpsat", {"lp_solver": "pdlp"}, "lp_solver: expected one of auto, glop, glop_unscaled"),
    # time_limit, which every method accepts, is checked where the method has no such option
    # too (a sweep's `greedy: {time_limit: abc}` was an unexpected ValueError; found by review)
    ("greedy", {"time_limit": "abc"}, "time_limit: must be a positive number of seconds"),
    ("greedy", {"time_limit": -1}, "time_limit: must be a positive number of seconds"),
    ("greedy", {"time_limit": True}, "time_limit: must be a positive number of seconds"),
    # whole-number options refuse fractions (a sweep's `seed: 1.5` reached numpy)
    ("random", {"seed": 1.5}, "seed: bad value for option of method random"),
    ("cpsat", {"num_workers": 2.5}, "num_workers: bad value for option of method cpsat"),
    ("cpsat", {"seed": True}, "seed: bad value for option of method cpsat"),
])
def test_out_of_range_options(method, options, expected):
    with pytest.raises(OptionError) as err:
        get_method(method).resolve(options)
    assert expected in str(err.value)


def test_in_range_options_and_sentinels_pass():
    assert get_method("cpsat").resolve({"rel_gap": "0", "num_workers": 0})["rel_gap"] == 0.0
    assert get_method("prfaas").resolve({"threshold": -1.0})["threshold"] == -1.0  # auto
    assert get_method("heatmap").resolve({"prefill_buckets": "3"})["prefill_buckets"] == 3
    assert get_method("random").resolve({"seed": 2.0})["seed"] == 2  # a whole float is a count
    assert get_method("greedy").resolve({"time_limit": 3})["fast"] is not None


def test_method_names_in_options_name_the_option():
    from factory import SCENARIOS

    from planner import load_scenario, solve
    from planner.api import as_instance

    inst = as_instance(load_scenario(SCENARIOS / "quickstart.yaml"))
    with pytest.raises(OptionError, match=r"options: warm_start: unknown method \(known: "):
        solve(inst, "cpsat", warm_start="nosuch", time_limit=1)
    with pytest.raises(OptionError, match=r"options: placement: unknown method"):
        solve(inst, "batch_fcfs", placement="nosuch")
    with pytest.raises(OptionError, match=r"options: placement: must be a placement method"):
        solve(inst, "batch_fcfs", placement="batch_sjf")


def test_unavailable_ortools_solver_is_an_option_error():
    from factory import SCENARIOS

    from planner import load_scenario, solve

    with pytest.raises(OptionError, match="solver: OR-Tools cannot use this solver here"):
        solve(load_scenario(SCENARIOS / "quickstart.yaml"), "milp_ortools", solver="NOSUCH",
              time_limit=1)


@pytest.mark.parametrize(("method", "options", "expected"), [
    ("milp", {"solver": "NOSUCH"}, "solver: unknown PuLP solver (known: CBC, "),
    ("milp", {"solver": "GUROBI_CMD"}, "solver: not available on this machine (available: CBC"),
    ("heatmap", {"prefill_edges": "0,abc"}, "prefill_edges: expected comma-separated numbers"),
    ("heatmap", {"decode_edges": "100,10"}, "decode_edges: must be strictly increasing"),
    ("heatmap", {"prefill_edges": "0,nan"}, "prefill_edges: must be finite"),
    ("heatmap", {"prefill_edges": "-5,10"}, "prefill_edges: must not be negative"),
    ("heatmap", {"prefill_buckets": 100_000_000}, "prefill_buckets: must be between 1 and 256"),
    ("prfaas", {"remote": "nosuch"}, "remote: unknown cluster (known: "),
])
def test_options_checked_against_the_instance_fail_before_any_work(method, options, expected):
    """Options whose range depends on the scenario (cluster names, installed solvers) or that
    are lists are an OptionError (one line, exit 2 on the CLI), not a method 'error' row."""
    from factory import SCENARIOS

    from planner import load_scenario, solve

    with pytest.raises(OptionError) as err:
        solve(load_scenario(SCENARIOS / "quickstart.yaml"), method, time_limit=1, **options)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_prfaas_remote_must_be_a_prefill_cluster():
    from factory import SCENARIOS

    from planner import load_scenario, solve

    sc = load_scenario(SCENARIOS / "quickstart.yaml")
    with pytest.raises(OptionError, match=r"remote: cluster cannot prefill \('use-decode'\)"):
        solve(sc, "prfaas", remote="use-decode")
    assert solve(sc, "prfaas", remote="use-prefill").status == "feasible"
