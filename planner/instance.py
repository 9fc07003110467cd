"""The compiled arrays every method takes, built once per scenario.

Per request (length R), per cluster (length C), per link (length L) and per cluster pair
(``pair = prefill * C + decode``, C*C rows of the route incidence). Nothing here is a formula of
the plan: those live in :mod:`planner.metrics`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from planner.scenario.model import Scenario
from planner.topology import build_graph, cluster_incidence, dc_routes

log = logging.getLogger(__name__)


def shared_block_tokens(blocks: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Tokens of each prefix-block occurrence, every occurrence of a block cut to the block's
    shortest one. Equal keys mean equal content, so two requests share at most the shorter of
    their two lengths (a chain's partial last block, or one group given two ``prefix_tokens``):
    crediting the longer one would reuse tokens that were never prefilled."""
    tokens = np.asarray(tokens, np.int64)
    if blocks.size == 0:
        return tokens
    least = np.full(int(blocks.max()) + 1, np.iinfo(np.int64).max)
    np.minimum.at(least, blocks, tokens)
    out = least[blocks]
    cut = int((out < tokens).sum())
    if cut:
        log.warning("%d prefix-block occurrence(s) are longer than their block's shortest "
                    "occurrence; a shared block counts its shortest length (%d tokens cut)",
                    cut, int((tokens - out).sum()))
    return out


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Instance:
    scenario: Scenario
    # requests
    ids: np.ndarray
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    origin: np.ndarray  # datacenter index or -1
    priority: np.ndarray
    kv_bytes: np.ndarray  # bytes of KV a request's decode needs moved from its prefill cluster
    prefix_ptr: np.ndarray  # CSR of prefix blocks (see Workload)
    prefix_blocks: np.ndarray
    prefix_block_tokens: np.ndarray
    prefix_owner: np.ndarray  # request index of each block occurrence
    prefix_tokens: np.ndarray  # tokens of a request covered by its prefix blocks
    # clusters
    cluster_names: tuple[str, ...]
    cluster_dc: np.ndarray  # datacenter index
    replicas: np.ndarray
    prefill_tps: np.ndarray
    decode_tps: np.ndarray
    step_full_s: np.ndarray  # decode step time at max batch
    kv_capacity_bytes: np.ndarray  # per replica
    max_batch: np.ndarray
    cost_per_hour: np.ndarray  # per replica
    can_prefill: np.ndarray
    can_decode: np.ndarray
    # links and routes
    link_names: tuple[str, ...]
    bandwidth_Bps: np.ndarray
    link_latency_s: np.ndarray
    cost_per_byte: np.ndarray
    pair_links: np.ndarray  # (C*C, L) 0/1 incidence
    reachable: np.ndarray  # (C, C): the route prefill c -> decode d exists
    route_latency_s: np.ndarray  # (C, C)
    # the question
    objective: str
    horizon_s: float | None
    prefix_caching: bool

    @property
    def n_requests(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def n_clusters(self) -> int:
        return len(self.cluster_names)

    @property
    def n_links(self) -> int:
        return len(self.link_names)

    @property
    def kv_bytes_per_token(self) -> int:
        return self.scenario.model.kv_bytes_per_token

    def cluster_index(self, name: str) -> int:
        return self.cluster_names.index(name)

    @property
    def valid_pairs(self) -> np.ndarray:
        """(C, C) bool: prefill on p and decode on d is allowed by roles and routes."""
        return self.can_prefill[:, None] & self.can_decode[None, :] & self.reachable


def build_instance(scenario: Scenario) -> Instance:
    wl = scenario.workload
    cl = scenario.clusters
    dc_index = {d: i for i, d in enumerate(scenario.datacenters)}
    graph = build_graph(scenario.datacenters, scenario.links)
    routes = dc_routes(graph, scenario.routes)
    inc = cluster_incidence(graph, routes, [c.datacenter for c in cl], len(scenario.links))
    kv = scenario.model.kv_bytes_per_token
    counts = np.diff(wl.prefix_ptr)
    owner = np.repeat(np.arange(len(wl)), counts)
    btok = shared_block_tokens(wl.prefix_blocks, wl.prefix_block_tokens)
    covered = np.bincount(owner, weights=btok, minlength=len(wl))
    f = np.array
    return Instance(
        scenario=scenario,
        ids=wl.ids,
        arrival_s=wl.arrival_s,
        prompt_tokens=wl.prompt_tokens,
        output_tokens=wl.output_tokens,
        origin=wl.origin,
        priority=wl.priority,
        kv_bytes=_ro(wl.prompt_tokens.astype(np.float64) * kv),
        prefix_ptr=wl.prefix_ptr,
        prefix_blocks=wl.prefix_blocks,
        prefix_block_tokens=_ro(btok),
        prefix_owner=_ro(owner.astype(np.int64)),
        prefix_tokens=_ro(covered.astype(np.int64)),
        cluster_names=tuple(c.name for c in cl),
        cluster_dc=_ro(f([dc_index[c.datacenter] for c in cl], np.int64)),
        replicas=_ro(f([c.replicas for c in cl], np.float64)),
        prefill_tps=_ro(f([c.prefill_tokens_per_s for c in cl], np.float64)),
        decode_tps=_ro(f([c.decode_tokens_per_s for c in cl], np.float64)),
        step_full_s=_ro(f([c.step_s() for c in cl], np.float64)),
        kv_capacity_bytes=_ro(f([c.kv_capacity_bytes for c in cl], np.float64)),
        max_batch=_ro(f([c.max_batch_size for c in cl], np.int64)),
        cost_per_hour=_ro(f([c.cost_per_hour for c in cl], np.float64)),
        can_prefill=_ro(f([c.can_prefill for c in cl], bool)),
        can_decode=_ro(f([c.can_decode for c in cl], bool)),
        link_names=tuple(lk.name for lk in scenario.links),
        bandwidth_Bps=_ro(f([lk.bandwidth_bytes_per_s for lk in scenario.links], np.float64)),
        link_latency_s=_ro(f([lk.latency_ms / 1e3 for lk in scenario.links], np.float64)),
        cost_per_byte=_ro(f([lk.cost_per_gb / 1e9 for lk in scenario.links], np.float64)),
        pair_links=_ro(inc.pair_links),
        reachable=_ro(inc.reachable),
        route_latency_s=_ro(inc.latency_s),
        objective=scenario.objective,
        horizon_s=scenario.horizon_s,
        prefix_caching=scenario.prefix_caching,
    )
