"""The scenario file's schema (pydantic): shapes, types and per-field ranges.

Cross-field rules (unknown cards, unknown datacenters in links, reachability, ...) are checked in
``planner.scenario.load`` after this schema has passed, so that every message names its field.
Unknown keys are errors: a typo must not be silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    field_validator,
    model_validator,
)

# Upper bounds of the numbers a scenario may hold. Past these a value is a typo, not a what-if,
# and the arithmetic downstream (int64 arrays, products of rates, times and prices) would overflow
# or lose every digit.
MAX_TOKENS = 1_000_000_000  # tokens of one request (prompt, output, prefix, length bounds)
MAX_PRIORITY = 2**31 - 1  # |priority|: fits int32 (stored as int64)
MAX_BATCH = 1_000_000  # sequences in one replica's decode batch (real engines: a few hundred)
MAX_SEED = 2**63 - 1  # seeds are 0 .. 2**63 - 1 (numpy takes non-negative integers)
MAX_SYNTHETIC = 10_000_000  # synthetic requests (and prefix groups); 1M generates in seconds
MAX_PRICE = 1e9  # $ per replica-hour and $ per GB: finite costs for any finite plan
MAX_SIGMA = 20.0  # a lognormal's sigma: e**20 is already a factor of 5e8 either way
MAX_TIME_S = 1e9  # horizon_s (31.7 years): rent over it stays finite (arrivals may be epochs)
MAX_ZIPF = 100.0  # group popularity exponent: past this, every request is in group 0
# physical ranges wide enough for any real fleet, narrow enough that every derived figure (bytes,
# seconds, solver coefficients) stays finite: kv_capacity_gb 1e300 made the bytes inf and
# `validate` crash, decode_tokens_per_s 1e-300 an infinite solver coefficient (found by review)
MIN_RATE, MAX_RATE = 1e-6, 1e12  # tokens per second of a replica; requests per second
MAX_STEP_S = 1e6  # a decode step's seconds (base, per sequence)
MAX_KV_GB = 1e9  # GB of KV cache or HBM in one replica
MIN_GBPS, MAX_GBPS = 1e-9, 1e9  # a link's bandwidth
MAX_SCALE = 1e9  # time_scale, time_unit_s
MAX_KV_BYTES_PER_TOKEN = 1e12
MAX_SHAPE = 1_000_000  # layers, kv_heads, head_dim


def _origin_kind(v: Any) -> str | None:
    if isinstance(v, str):
        return "str"
    return "dict" if isinstance(v, dict) else None


# one datacenter for every request, or a weighted mix {datacenter: weight}; errors come from the
# branch the value's type picks (not "should be a valid string" for a mapping with a bad weight)
Origin = Annotated[
    Annotated[str, Tag("str")] | Annotated[dict[str, float], Tag("dict")],
    Discriminator(_origin_kind, custom_error_type="origin_type",
                  custom_error_message="an origin is a datacenter name or a mapping "
                                       "{datacenter: weight}"),
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no inf/NaN anywhere

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """``replicas: true`` is a mistake, not 1 (pydantic would take it as 1)."""
        if isinstance(data, dict):
            for name, f in cls.model_fields.items():
                ann = str(f.annotation)
                if isinstance(data.get(name), bool) and ("int" in ann or "float" in ann) \
                        and "bool" not in ann.lower():
                    raise ValueError(f"{name} must be a number, not {data[name]!r}")
        return data


PositiveFloat = Field(default=None, gt=0)


# replicas are named CLUSTER#k and links A|B: a name holding either separator is ambiguous
# (clusters `ad` with 2 replicas and `ad#1`: the plan checker read `ad#1` as the cluster, the
# replay as the replica; found by review)
def _plain_name(v: str) -> str:
    if "#" in v or "|" in v:
        raise ValueError("must not hold '#' or '|' (they join replica and link names)")
    return v


PlainName = Annotated[str, Field(min_length=1), AfterValidator(_plain_name)]


class ClusterSpec(_Spec):
    name: PlainName
    role: Literal["prefill", "decode", "mixed"]
    replicas: int = Field(gt=0, le=100_000, strict=True)  # "2" is a typo, not a count
    accelerator: str | None = None
    # per-replica overrides of the accelerator card
    prefill_tokens_per_s: float | None = Field(default=None, gt=0, le=MAX_RATE)
    decode_tokens_per_s: float | None = Field(default=None, gt=0, le=MAX_RATE)
    decode_step_base_s: float | None = Field(default=None, ge=0, le=MAX_STEP_S)
    decode_step_per_seq_s: float | None = Field(default=None, ge=0, le=MAX_STEP_S)
    kv_capacity_gb: float | None = Field(default=None, gt=0, le=MAX_KV_GB)
    hbm_gb: float | None = Field(default=None, gt=0, le=MAX_KV_GB)
    max_batch_size: int | None = Field(default=None, gt=0, le=MAX_BATCH)
    cost_per_hour: float | None = Field(default=None, ge=0, le=MAX_PRICE)

    @field_validator("prefill_tokens_per_s", "decode_tokens_per_s")
    @classmethod
    def _rate(cls, v: float | None) -> float | None:
        if v is not None and 0 < v < MIN_RATE:
            raise ValueError(f"below {MIN_RATE:g} tokens per second: no replica is that slow")
        return v


class DatacenterSpec(_Spec):
    name: PlainName
    clusters: list[ClusterSpec] = Field(default_factory=list)


class LinkSpec(_Spec):
    between: tuple[str, str]
    bandwidth_gbps: float = Field(gt=0, le=MAX_GBPS)
    latency_ms: float = Field(default=0.0, ge=0, le=MAX_TIME_S * 1000)
    cost_per_gb: float = Field(default=0.0, ge=0, le=MAX_PRICE)

    @field_validator("bandwidth_gbps")
    @classmethod
    def _bandwidth(cls, v: float) -> float:
        if 0 < v < MIN_GBPS:
            raise ValueError(f"below {MIN_GBPS:g} Gbps (1 bit per second): no link is that slow")
        return v


class RouteSpec(_Spec):
    """An explicit route: the datacenters in order, ``path: [a, c, b]`` for a -> c -> b."""

    path: list[str] = Field(min_length=2)


class RequestSpec(_Spec):
    id: str | int
    arrival_s: float = Field(default=0.0, ge=0)
    prompt_tokens: int = Field(ge=0, le=MAX_TOKENS)
    output_tokens: int = Field(ge=0, le=MAX_TOKENS)
    prefix: str | int | list[str | int] | None = None
    prefix_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    origin: str | None = None
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)


class FileSpec(_Spec):
    path: str
    format: Literal["azure", "mooncake", "csv", "jsonl"]
    limit: int | None = Field(default=None, gt=0)
    # csv/jsonl: our field -> the file's column, e.g. {prompt_tokens: input_len}
    columns: dict[str, str] = Field(default_factory=dict)
    # timestamps in the file are multiplied by this to give seconds (mooncake: 0.001)
    time_unit_s: float | None = Field(default=None, gt=0, le=MAX_SCALE)
    origin: Origin | None = None
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    block_tokens: int = Field(default=512, gt=0, le=MAX_TOKENS)


class LengthSpec(_Spec):
    """A lognormal length distribution, clipped to [min, max] and rounded to integers."""

    median: float = Field(gt=0, le=MAX_TOKENS)
    sigma: float = Field(default=1.0, ge=0, le=MAX_SIGMA)
    min: int = Field(default=0, ge=0, le=MAX_TOKENS)
    max: int = Field(default=1_000_000, gt=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _ordered(self) -> LengthSpec:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class PrefixSpec(_Spec):
    groups: int = Field(gt=0, le=MAX_SYNTHETIC)
    share: float = Field(default=0.5, ge=0, le=1)  # fraction of requests that carry a prefix
    tokens: int = Field(default=1024, gt=0, le=MAX_TOKENS)  # length of each group's shared prefix
    zipf: float = Field(default=1.0, ge=0, le=MAX_ZIPF)  # group popularity ~ 1 / rank**zipf


class SyntheticSpec(_Spec):
    count: int = Field(gt=0, le=MAX_SYNTHETIC)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    arrival_rate: float = Field(default=10.0, gt=0, le=MAX_RATE)  # requests per second, Poisson
    prompt: LengthSpec = Field(default_factory=lambda: LengthSpec(median=1024, sigma=1.0, min=1))
    output: LengthSpec = Field(default_factory=lambda: LengthSpec(median=256, sigma=1.0))
    prefix: PrefixSpec | None = None
    origin: Origin | None = None

    @model_validator(mode="after")
    def _prefix_fits(self) -> SyntheticSpec:
        if self.prefix is not None and self.prefix.tokens > self.prompt.max:
            raise ValueError(f"prefix.tokens {self.prefix.tokens} is above prompt.max "
                             f"{self.prompt.max}: the prompts would exceed their maximum")
        return self


class WorkloadSpec(_Spec):
    requests: list[RequestSpec] | None = None
    file: FileSpec | None = None
    synthetic: SyntheticSpec | None = None
    # arrival times are multiplied by this (0.5 = the same trace twice as fast)
    time_scale: float = Field(default=1.0, gt=0, le=MAX_SCALE)

    @model_validator(mode="after")
    def _exactly_one(self) -> WorkloadSpec:
        given = [k for k in ("requests", "file", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of requests, file, synthetic"
                + (f" (given: {', '.join(given)})" if given else "")
            )
        return self


class ScenarioSpec(_Spec):
    name: str = Field(min_length=1)
    description: str = ""
    model: str | dict[str, Any]
    objective: Literal["makespan", "cost", "served"] = "makespan"
    horizon_s: float | None = Field(default=None, gt=0, le=MAX_TIME_S)
    prefix_caching: StrictBool = False
    datacenters: list[DatacenterSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
    workload: WorkloadSpec
    # free-form settings for later stages (simulation, reports); kept, not interpreted here
    extra: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Spec):
    name: str = "inline"
    kv_bytes_per_token: int | None = Field(default=None, gt=0, le=MAX_KV_BYTES_PER_TOKEN)
    layers: int | None = Field(default=None, gt=0, le=MAX_SHAPE)
    kv_heads: int | None = Field(default=None, gt=0, le=MAX_SHAPE)
    head_dim: int | None = Field(default=None, gt=0, le=MAX_SHAPE)
    bytes_per_element: int = Field(default=2, gt=0, le=64)
    params_billion: float | None = Field(default=None, gt=0, le=1e6)

    @model_validator(mode="after")
    def _kv(self) -> ModelSpec:
        if self.kv_bytes_per_token is None and None in (self.layers, self.kv_heads, self.head_dim):
            raise ValueError("give kv_bytes_per_token, or layers, kv_heads and head_dim")
        return self
