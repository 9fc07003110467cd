"""The topology: datacenters as NetworkX nodes, links as edges, a route for every ordered pair
of datacenters, and the cluster-pair -> link incidence matrix that makes link bytes one matrix
product (``bytes_per_pair @ pair_links``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from planner.scenario.model import Link


def build_graph(datacenters: Sequence[str], links: Sequence[Link]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(datacenters)
    for i, link in enumerate(links):
        g.add_edge(link.a, link.b, index=i, latency_ms=link.latency_ms,
                   bandwidth_gbps=link.bandwidth_gbps, cost_per_gb=link.cost_per_gb)
    return g


def dc_routes(
    graph: nx.Graph, explicit: Sequence[Sequence[str]] = ()
) -> dict[tuple[str, str], tuple[str, ...]]:
    """A route (list of datacenters) for every ordered pair that is connected: the listed route
    when the scenario gives one, else the shortest path by latency (ties: fewest hops, then
    names, so the choice is deterministic)."""
    routes: dict[tuple[str, str], tuple[str, ...]] = {}
    nodes = sorted(graph.nodes)
    for src in nodes:
        # Dijkstra on (latency, hops) through a tiny epsilon per hop keeps ties deterministic
        paths = nx.single_source_dijkstra_path(
            graph, src, weight=lambda u, v, d: d["latency_ms"] + 1e-9
        )
        for dst, path in paths.items():
            routes[(src, dst)] = tuple(path)
    for path in explicit:
        routes[(path[0], path[-1])] = tuple(path)
    return routes


@dataclass(frozen=True, eq=False)
class RouteIncidence:
    """Routes between clusters. ``pair_links[p * C + d, l] == 1`` when the KV of a request
    prefilled on cluster p and decoded on cluster d crosses link l; ``reachable[p, d]``."""

    pair_links: np.ndarray  # (C*C, L) float64
    reachable: np.ndarray  # (C, C) bool
    latency_s: np.ndarray  # (C, C) float64, one-way route latency


def cluster_incidence(
    graph: nx.Graph,
    routes: dict[tuple[str, str], tuple[str, ...]],
    cluster_dcs: Sequence[str],
    n_links: int,
) -> RouteIncidence:
    dcs = sorted(set(cluster_dcs))
    dc_links: dict[tuple[str, str], list[int]] = {}
    dc_lat: dict[tuple[str, str], float] = {}
    for a in dcs:
        for b in dcs:
            path = routes.get((a, b))
            if path is None:
                continue
            hops = list(zip(path[:-1], path[1:], strict=True))
            dc_links[(a, b)] = [graph.edges[u, v]["index"] for u, v in hops]
            dc_lat[(a, b)] = sum(graph.edges[u, v]["latency_ms"] for u, v in hops) / 1e3
    c = len(cluster_dcs)
    inc = np.zeros((c * c, n_links))
    reach = np.zeros((c, c), bool)
    lat = np.full((c, c), np.inf)
    for p, a in enumerate(cluster_dcs):
        for d, b in enumerate(cluster_dcs):
            if (a, b) in dc_links:
                reach[p, d] = True
                lat[p, d] = dc_lat[(a, b)]
                for li in dc_links[(a, b)]:
                    inc[p * c + d, li] = 1.0
    return RouteIncidence(pair_links=inc, reachable=reach, latency_s=lat)
