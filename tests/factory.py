"""Test helpers shared by every test folder: paths and a small scenario builder.

(A module of its own, not conftest.py: a second conftest.py in a sub-folder would shadow it.)
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
SCENARIOS = ROOT / "scenarios"


def make_scenario(
    clusters: list[dict],
    requests: list[dict],
    links: list[dict] | None = None,
    datacenters: list[str] | None = None,
    **top,
) -> dict:
    """A scenario mapping. ``clusters`` carry a ``dc`` key (default "dc0"); cards are inline:
    prefill 1000 tok/s, decode 100 tok/s, batch 4, KV 1 GB, $1/h unless given. The model has
    kv_bytes_per_token 1000."""
    dcs: dict[str, list[dict]] = {d: [] for d in (datacenters or [])}
    for c in clusters:
        c = dict(c)
        dc = c.pop("dc", "dc0")
        if "accelerator" not in c:
            c.setdefault("prefill_tokens_per_s", 1000.0)
            if "decode_step_base_s" not in c:
                c.setdefault("decode_tokens_per_s", 100.0)
            c.setdefault("kv_capacity_gb", 1.0)
            c.setdefault("max_batch_size", 4)
            c.setdefault("cost_per_hour", 1.0)
        c.setdefault("replicas", 1)
        c.setdefault("role", "mixed")
        dcs.setdefault(dc, []).append(c)
    reqs = []
    for i, r in enumerate(requests):
        r = dict(r)
        r.setdefault("id", f"r{i}")
        r.setdefault("output_tokens", 0)
        reqs.append(r)
    return {
        "name": top.pop("name", "test"),
        "model": top.pop("model", {"kv_bytes_per_token": 1000}),
        "datacenters": [{"name": d, "clusters": cs} for d, cs in dcs.items()],
        "links": links or [],
        "workload": {"requests": reqs},
        **top,
    }
