from __future__ import annotations

from planner.scenario.model import Link
from planner.topology import build_graph, cluster_incidence, dc_routes


def test_shortest_route_by_latency_and_incidence():
    links = [Link("a", "b", 10, 10), Link("b", "c", 10, 10), Link("a", "c", 10, 50)]
    g = build_graph(["a", "b", "c"], links)
    routes = dc_routes(g)
    assert routes[("a", "c")] == ("a", "b", "c")
    assert routes[("c", "a")] == ("c", "b", "a")
    assert routes[("a", "a")] == ("a",)
    inc = cluster_incidence(g, routes, ["a", "c", "a"], 3)
    c = 3
    assert inc.pair_links[0 * c + 1].tolist() == [1, 1, 0]
    assert inc.pair_links[0 * c + 2].tolist() == [0, 0, 0]  # same datacenter: free
    assert inc.latency_s[0, 1] == 0.020
    assert inc.reachable.all()


def test_explicit_route_and_unreachable():
    links = [Link("a", "b", 10, 10), Link("b", "c", 10, 10), Link("a", "c", 10, 50)]
    g = build_graph(["a", "b", "c", "island"], links)
    routes = dc_routes(g, [("a", "c")])
    assert routes[("a", "c")] == ("a", "c")
    inc = cluster_incidence(g, routes, ["a", "island"], 3)
    assert not inc.reachable[0, 1] and inc.reachable[1, 1]
