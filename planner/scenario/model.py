"""The validated scenario as frozen dataclasses (no pydantic past the edge).

Units are SI throughout: seconds, bytes, tokens. Conversions from the file's units (GB, Gbps, ms,
per hour) happen once, here, in the properties.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GB = 1e9  # bytes
GBPS = 1e9 / 8  # bytes per second in one Gbps

ROLES = ("prefill", "decode", "mixed")
OBJECTIVES = ("makespan", "cost", "served")


@dataclass(frozen=True)
class ModelCard:
    """An LLM: what sets its KV-cache bytes per token."""

    name: str
    kv_bytes_per_token: int
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    bytes_per_element: int | None = None
    params_billion: float | None = None


@dataclass(frozen=True)
class AcceleratorCard:
    """One accelerator serving one replica of the reference model (see models/accelerators)."""

    name: str
    hbm_gb: float
    kv_capacity_gb: float
    prefill_tokens_per_s: float
    decode_step_base_s: float
    decode_step_per_seq_s: float
    max_batch_size: int
    cost_per_hour: float

    @property
    def decode_tokens_per_s(self) -> float:
        b = self.max_batch_size
        return b / (self.decode_step_base_s + self.decode_step_per_seq_s * b)


@dataclass(frozen=True)
class Cluster:
    """``replicas`` engines of one accelerator in one datacenter, with a role.

    The decode step time is linear in the batch size, ``step_s(b) = base + per_seq * b``, so
    ``decode_tokens_per_s = max_batch_size / step_s(max_batch_size)``.
    """

    name: str
    datacenter: str
    role: str
    replicas: int
    prefill_tokens_per_s: float
    decode_step_base_s: float
    decode_step_per_seq_s: float
    kv_capacity_gb: float
    max_batch_size: int
    cost_per_hour: float
    accelerator: str | None = None

    @property
    def can_prefill(self) -> bool:
        return self.role in ("prefill", "mixed")

    @property
    def can_decode(self) -> bool:
        return self.role in ("decode", "mixed")

    def step_s(self, batch: float | None = None) -> float:
        b = self.max_batch_size if batch is None else batch
        return self.decode_step_base_s + self.decode_step_per_seq_s * b

    @property
    def decode_tokens_per_s(self) -> float:
        return self.max_batch_size / self.step_s()

    @property
    def kv_capacity_bytes(self) -> float:
        return self.kv_capacity_gb * GB


@dataclass(frozen=True)
class Link:
    """An undirected edge between two datacenters."""

    a: str
    b: str
    bandwidth_gbps: float
    latency_ms: float = 0.0
    cost_per_gb: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.a}|{self.b}"

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_gbps * GBPS


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests as parallel numpy arrays (read-only).

    Prefixes are block chains in CSR form: request ``i`` holds blocks
    ``prefix_blocks[prefix_ptr[i]:prefix_ptr[i+1]]`` covering ``prefix_block_tokens`` tokens each.
    A group-id prefix is one block of ``prefix_tokens`` tokens; a Mooncake ``hash_ids`` chain is
    one block per 512 tokens. Blocks are integer codes, equal codes mean equal content.
    """

    ids: np.ndarray
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    origin: np.ndarray  # index into Scenario.datacenters, -1 for none
    priority: np.ndarray
    prefix_ptr: np.ndarray
    prefix_blocks: np.ndarray
    prefix_block_tokens: np.ndarray
    source: str = "inline"
    files: tuple[str, ...] = ()  # the trace files read, as given (see Scenario.input_files)

    def __post_init__(self) -> None:
        for name in (
            "ids", "arrival_s", "prompt_tokens", "output_tokens", "origin", "priority",
            "prefix_ptr", "prefix_blocks", "prefix_block_tokens",
        ):
            getattr(self, name).flags.writeable = False

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def has_prefixes(self) -> bool:
        return self.prefix_blocks.size > 0


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated scenario: topology, clusters, model, workload, objective."""

    name: str
    model: ModelCard
    objective: str
    datacenters: tuple[str, ...]
    clusters: tuple[Cluster, ...]
    links: tuple[Link, ...]
    workload: Workload
    horizon_s: float | None = None
    routes: tuple[tuple[str, ...], ...] = ()
    prefix_caching: bool = False
    description: str = ""
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    def input_files(self) -> dict[str, str]:
        """The files this scenario was read from, by real path: the scenario file and its trace
        files, each with a label naming it (outputs must not overwrite them)."""
        out = {os.path.realpath(f): f"the trace file {f}" for f in self.workload.files}
        if self.path is not None:
            out[os.path.realpath(self.path)] = f"the scenario file {self.path}"
        return out

    def cluster(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)
