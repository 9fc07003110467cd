"""Loading a scenario file: parse (YAML, JSON or TOML), check the schema, then every rule of the
domain, collecting all problems before raising one :class:`ScenarioError`."""

from __future__ import annotations

import json
import logging
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from planner import catalog
from planner.scenario.errors import MISSING, Problem, ScenarioError, format_path, reason
from planner.scenario.model import Cluster, Link, ModelCard, Scenario, Workload
from planner.scenario.schema import (
    ClusterSpec,
    ModelSpec,
    RequestSpec,
    ScenarioSpec,
    WorkloadSpec,
)
from planner.topology import build_graph, dc_routes
from planner.workload.base import assemble, is_hash_chain
from planner.workload.synthetic import generate
from planner.workload.traces import _group_tokens, read_trace

log = logging.getLogger(__name__)
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "tuple"}


class _Refused(ValueError):
    """A document the loader refuses: a key given twice, an alias bomb, a recursive alias."""


class _StrictLoader(yaml.SafeLoader):
    """YAML without silent overwrites: a key given twice in one mapping is an error."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201
        # the mapping's own keys only: a key merged in from an anchor (<<: *card) may be
        # overridden; non-scalar keys are left to the base class's own error
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node,
                                                                           yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _Refused(f"key {key!r} given twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


MAX_EXPANDED_NODES = 1_000_000  # beyond this, aliases may expand a document 10x at most


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (a shared node counts
    each time it is used), computed once per distinct node."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            raise _Refused("a recursive alias (an anchor used inside itself)")
        return memo[key]
    memo[key] = -1
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size
    return size


def load_yaml(text: str) -> Any:
    """YAML through the strict loader, refusing an alias "bomb": a document whose aliases expand
    it past ``MAX_EXPANDED_NODES`` and 10x its written size (nine lines of nested aliases stand
    for 10^9 strings, and validating them would run for hours)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        memo: dict[int, int] = {}
        size = _expanded_size(node, memo)
        if size > max(MAX_EXPANDED_NODES, 10 * len(memo)):
            raise _Refused(f"aliases expand {len(memo)} written nodes to {size:.3g}; "
                                "write the values out instead")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def one_key_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a mapping, refusing a key given twice (json keeps the last
    silently); for ``json.loads(..., object_pairs_hook=one_key_each)``."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"key {k!r} given twice in one object")
        out[k] = v
    return out


def read_document(path: Path) -> dict[str, Any]:
    """Parse a YAML / JSON / TOML file into a mapping, or raise ScenarioError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(path), [Problem("<file>", "file not found", str(path))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [Problem("<file>", f"cannot read: {exc}", str(path))]) from None
    try:
        suffix = path.suffix.lower()
        if suffix == ".json":
            data = json.loads(text, object_pairs_hook=one_key_each)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = load_yaml(text)
    except (yaml.YAMLError, ValueError, tomllib.TOMLDecodeError, _Refused,
            RecursionError) as exc:
        # ValueError: JSON's errors, and an integer of over 4,300 digits in any of the three;
        # RecursionError: nesting thousands deep (both were "unexpected"; found by review)
        first = reason(exc)
        raise ScenarioError(str(path), [Problem("<file>", f"not valid {suffix[1:] or 'yaml'}: {first}",
                                                path.name)]) from None
    if not isinstance(data, dict):
        raise ScenarioError(str(path), [Problem("<top>", "a scenario must be a mapping",
                                                type(data).__name__)])
    return data


def pydantic_problems(exc: ValidationError, prefix: tuple = ()) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = [p for p in err["loc"]
               if not (isinstance(p, str) and (p in _UNION_TAGS or "[" in p))]
        path = format_path((*prefix, *loc))
        if path in seen:
            continue
        seen.add(path)
        msg = err["msg"].removeprefix("Value error, ")
        given = MISSING if err["type"] == "missing" else err.get("input", MISSING)
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(Problem(path, msg, given))
    return out


def load_scenario(source: str | Path | dict[str, Any], *, name: str | None = None) -> Scenario:
    """Load and validate a scenario from a file path or an already-parsed mapping."""
    if isinstance(source, dict):
        file, base_dir, data = name or "<scenario>", Path.cwd(), source
    elif not isinstance(source, (str, Path)):  # a raw TypeError before (found by review)
        raise ScenarioError(name or "<scenario>", [Problem(
            "<top>", "a scenario is a file path or a mapping", type(source).__name__)])
    else:
        path = Path(source)
        file, base_dir, data = str(path), path.resolve().parent, read_document(path)
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(file, pydantic_problems(exc)) from None
    problems: list[Problem] = []
    scenario = _build(spec, base_dir, problems)
    if problems or scenario is None:
        raise ScenarioError(file, problems)
    from planner.simulate.config import make_config

    make_config(scenario.extra, file=file)  # replay settings in extra: checked with the file
    if not isinstance(source, dict):
        object.__setattr__(scenario, "path", Path(source))
    return scenario


def _model(spec: ScenarioSpec, base_dir: Path, problems: list[Problem]) -> ModelCard | None:
    if isinstance(spec.model, str):
        try:
            return catalog.load_model_card(spec.model, base_dir / "models")
        except ScenarioError as exc:
            problems.extend(_card_problems(exc, "model"))
            return None
        except KeyError:
            known = ", ".join(catalog.llm_names(base_dir / "models"))
            problems.append(Problem("model", f"unknown model card (known: {known})", spec.model))
            return None
    try:
        m = ModelSpec.model_validate(spec.model)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, ("model",)))
        return None
    return catalog.model_card_from_dict(m.model_dump(exclude_none=True), m.name)


def _card_problems(exc: ScenarioError, where: str) -> list[Problem]:
    """A bad card file's problems, each named under the scenario field that uses the card."""
    return [Problem(where, f"bad card {exc.file}: {p.path}: {p.message}", p.given)
            for p in exc.problems]


_OVERRIDES = ("prefill_tokens_per_s", "kv_capacity_gb", "max_batch_size", "cost_per_hour")


def _cluster(
    c: ClusterSpec, dc: str, where: str, base_dir: Path, problems: list[Problem]
) -> Cluster | None:
    card = None
    if c.accelerator is not None:
        try:
            card = catalog.load_accelerator(c.accelerator, base_dir / "models")
        except ScenarioError as exc:
            problems.extend(_card_problems(exc, f"{where}.accelerator"))
            return None
        except KeyError:
            known = ", ".join(catalog.accelerator_names(base_dir / "models"))
            problems.append(Problem(f"{where}.accelerator",
                                    f"unknown accelerator card (known: {known})", c.accelerator))
            return None
    values: dict[str, Any] = {}
    ok = True
    for f in _OVERRIDES:
        v = getattr(c, f)
        if v is None and card is not None:
            v = getattr(card, f)
        if v is None:
            problems.append(Problem(f"{where}.{f}",
                                    "required when the cluster names no accelerator card"))
            ok = False
        values[f] = v
    # the decode step model: step_s(b) = base + per_seq * b
    explicit_step = c.decode_step_base_s is not None or c.decode_step_per_seq_s is not None
    if explicit_step and c.decode_tokens_per_s is not None:
        problems.append(Problem(f"{where}.decode_tokens_per_s",
                                "give either decode_tokens_per_s or the decode step model "
                                "(decode_step_base_s, decode_step_per_seq_s), not both",
                                c.decode_tokens_per_s))
        return None
    if not ok:
        return None
    b = int(values["max_batch_size"])
    if explicit_step:
        base = c.decode_step_base_s if c.decode_step_base_s is not None else (
            card.decode_step_base_s if card else 0.0)
        per = c.decode_step_per_seq_s if c.decode_step_per_seq_s is not None else (
            card.decode_step_per_seq_s if card else 0.0)
        if base + per * b <= 0:
            problems.append(Problem(f"{where}.decode_step_base_s",
                                    "the decode step time must be positive", base))
            return None
    elif c.decode_tokens_per_s is not None:
        full = b / c.decode_tokens_per_s
        if card is not None and card.decode_step_base_s + card.decode_step_per_seq_s * b > 0:
            # keep the card's shape, scaled to the given throughput
            k = full / (card.decode_step_base_s + card.decode_step_per_seq_s * b)
            base, per = card.decode_step_base_s * k, card.decode_step_per_seq_s * k
        else:  # no shape known: a step time independent of the batch (memory-bound)
            base, per = full, 0.0
    elif card is not None:
        base, per = card.decode_step_base_s, card.decode_step_per_seq_s
    else:
        problems.append(Problem(f"{where}.decode_tokens_per_s",
                                "required when the cluster names no accelerator card"))
        return None
    return Cluster(
        name=c.name, datacenter=dc, role=c.role, replicas=c.replicas,
        prefill_tokens_per_s=float(values["prefill_tokens_per_s"]),
        decode_step_base_s=float(base), decode_step_per_seq_s=float(per),
        kv_capacity_gb=float(values["kv_capacity_gb"]), max_batch_size=b,
        cost_per_hour=float(values["cost_per_hour"]), accelerator=c.accelerator,
    )


def _duplicates(names: list[str]) -> set[str]:
    return {n for n, k in Counter(names).items() if k > 1}


def _build(spec: ScenarioSpec, base_dir: Path, problems: list[Problem]) -> Scenario | None:
    model = _model(spec, base_dir, problems)
    dcs = [d.name for d in spec.datacenters]
    for i, d in enumerate(spec.datacenters):
        if d.name in _duplicates(dcs) and dcs.index(d.name) != i:
            problems.append(Problem(f"datacenters[{i}].name", "duplicate datacenter name", d.name))
    all_clusters = [c.name for d in spec.datacenters for c in d.clusters]
    dup_c = _duplicates(all_clusters)
    seen: set[str] = set()
    clusters: list[Cluster] = []
    for i, d in enumerate(spec.datacenters):
        for j, c in enumerate(d.clusters):
            where = f"datacenters[{i}].clusters[{j}]"
            if c.name in dup_c and c.name in seen:
                problems.append(Problem(f"{where}.name", "duplicate cluster name", c.name))
            seen.add(c.name)
            cl = _cluster(c, d.name, where, base_dir, problems)
            if cl is not None:
                clusters.append(cl)
    if not all_clusters:
        problems.append(Problem("datacenters", "no cluster in any datacenter", MISSING))
    elif not any(c.role in ("prefill", "mixed") for d in spec.datacenters for c in d.clusters):
        problems.append(Problem("datacenters", "no cluster can prefill (role prefill or mixed)",
                                sorted({c.role for d in spec.datacenters for c in d.clusters})))
    elif not any(c.role in ("decode", "mixed") for d in spec.datacenters for c in d.clusters):
        problems.append(Problem("datacenters", "no cluster can decode (role decode or mixed)",
                                sorted({c.role for d in spec.datacenters for c in d.clusters})))

    links: list[Link] = []
    pairs: set[frozenset[str]] = set()
    for i, lk in enumerate(spec.links):
        a, b = lk.between
        where = f"links[{i}].between"
        bad = False
        for k, end in enumerate((a, b)):
            if end not in dcs:
                problems.append(Problem(f"{where}[{k}]", "unknown datacenter", end))
                bad = True
        if a == b:
            problems.append(Problem(where, "a link must join two different datacenters", [a, b]))
            bad = True
        elif frozenset((a, b)) in pairs:
            problems.append(Problem(where, "duplicate link between the same datacenters", [a, b]))
            bad = True
        pairs.add(frozenset((a, b)))
        if not bad:
            links.append(Link(a, b, lk.bandwidth_gbps, lk.latency_ms, lk.cost_per_gb))

    graph = build_graph(dcs, links)
    routes: list[tuple[str, ...]] = []
    ends: dict[tuple[str, str], int] = {}
    for i, r in enumerate(spec.routes):
        bad = False
        for k, node in enumerate(r.path):
            if node not in dcs:
                problems.append(Problem(f"routes[{i}].path[{k}]", "unknown datacenter", node))
                bad = True
            elif node in r.path[:k]:
                problems.append(Problem(f"routes[{i}].path[{k}]", "a route visits a datacenter "
                                        "once (no cycles)", node))
                bad = True
        if r.path and (r.path[0], r.path[-1]) in ends:
            problems.append(Problem(f"routes[{i}].path", f"a second route from {r.path[0]} to "
                                    f"{r.path[-1]} (routes[{ends[(r.path[0], r.path[-1])]}])", r.path))
            bad = True
        elif r.path:
            ends[(r.path[0], r.path[-1])] = i
        if not bad:
            for k, (u, v) in enumerate(zip(r.path[:-1], r.path[1:], strict=True)):
                if not graph.has_edge(u, v):
                    problems.append(Problem(f"routes[{i}].path[{k + 1}]",
                                            f"no link between {u} and {v}", v))
                    bad = True
        if not bad:
            routes.append(tuple(r.path))

    reach = dc_routes(graph, routes)
    if clusters and not problems:
        prefill_dcs = {c.datacenter for c in clusters if c.can_prefill}
        for i, d in enumerate(spec.datacenters):
            for j, c in enumerate(d.clusters):
                if c.role == "decode" and not any((p, d.name) in reach for p in prefill_dcs):
                    problems.append(Problem(
                        f"datacenters[{i}].clusters[{j}]",
                        "decode cluster cannot be reached from any prefill cluster "
                        f"(no link path to {', '.join(sorted(prefill_dcs))})", c.name))

    if spec.objective == "cost" and spec.horizon_s is None:
        problems.append(Problem("horizon_s", "the cost objective needs horizon_s", MISSING))

    workload = _workload(spec.workload, base_dir, dcs, problems)
    if workload is not None and not np.isfinite(workload.arrival_s).all():
        k = int(np.flatnonzero(~np.isfinite(workload.arrival_s))[0])
        problems.append(Problem("workload.time_scale", f"request {workload.ids[k]}: its arrival "
                                "time times time_scale is not a finite number of seconds",
                                spec.workload.time_scale))
    if problems or model is None or workload is None:
        return None
    _warn_unreachable(clusters, dcs, reach, workload)
    return Scenario(
        name=spec.name, model=model, objective=spec.objective, datacenters=tuple(dcs),
        clusters=tuple(clusters), links=tuple(links), workload=workload,
        horizon_s=spec.horizon_s, routes=tuple(routes), prefix_caching=spec.prefix_caching,
        description=spec.description, extra=dict(spec.extra),
    )


def _warn_unreachable(clusters: list[Cluster], dcs: list[str], reach: Any, wl: Workload) -> None:
    """Warn (not fail) about parts of the fleet no plan can use: a prefill-only cluster with no
    decode cluster within reach (it still pays rent under the cost objective), and an origin
    datacenter from which no prefill cluster is reachable (its requests are placed as if they
    arrived elsewhere: origins steer policies, they carry no bytes in the model)."""
    decode_dcs = {c.datacenter for c in clusters if c.can_decode}
    prefill_dcs = {c.datacenter for c in clusters if c.can_prefill}
    for c in clusters:
        if c.role == "prefill" and not any((c.datacenter, d) in reach for d in decode_dcs):
            log.warning("cluster %s (prefill, in %s) reaches no decode cluster: no plan can use "
                        "it", c.name, c.datacenter)
    counts = np.bincount(wl.origin[wl.origin >= 0], minlength=len(dcs))
    for k in np.flatnonzero(counts):
        if not any((p, dcs[k]) in reach or (dcs[k], p) in reach for p in prefill_dcs):
            log.warning("datacenter %s is the origin of %d request(s) but no prefill cluster is "
                        "reachable from it: they are placed as if they arrived elsewhere",
                        dcs[k], int(counts[k]))


def _workload(
    spec: WorkloadSpec, base_dir: Path, dcs: list[str], problems: list[Problem]
) -> Workload | None:
    if spec.synthetic is not None:
        wl, probs = generate(spec.synthetic, dcs, spec.time_scale)
        problems.extend(probs)
        return wl
    if spec.file is not None:
        wl, probs = read_trace(spec.file, base_dir, dcs, spec.time_scale)
        problems.extend(probs)
        return wl
    return _inline(spec.requests or [], spec.time_scale, dcs, problems)


def _inline(
    reqs: list[RequestSpec], time_scale: float, dcs: list[str], problems: list[Problem]
) -> Workload | None:
    if not reqs:
        problems.append(Problem("workload.requests", "no requests", []))
        return None
    ids = [str(r.id) for r in reqs]
    dup = _duplicates(ids)
    index = {d: i for i, d in enumerate(dcs)}
    seen: set[str] = set()
    for i, r in enumerate(reqs):
        where = f"workload.requests[{i}]"
        if ids[i] in dup and ids[i] in seen:
            problems.append(Problem(f"{where}.id", "duplicate request id", r.id))
        seen.add(ids[i])
        if r.origin is not None and r.origin not in index:
            problems.append(Problem(f"{where}.origin", "unknown datacenter", r.origin))
        if r.prefix_tokens is not None and r.prefix_tokens > r.prompt_tokens:
            problems.append(Problem(f"{where}.prefix_tokens",
                                    "longer than the prompt", r.prefix_tokens))
        if isinstance(r.prefix, list) and not is_hash_chain(r.prefix):
            problems.append(Problem(f"{where}.prefix",
                                    "a block chain must hold 64-bit integer hashes", r.prefix))
    if problems:
        return None
    prompt = np.array([r.prompt_tokens for r in reqs], np.int64)
    common = dict(
        ids=np.array(ids), arrival_s=np.array([r.arrival_s for r in reqs]), prompt_tokens=prompt,
        output_tokens=np.array([r.output_tokens for r in reqs], np.int64),
        origin=np.array([index.get(r.origin, -1) if r.origin else -1 for r in reqs], np.int64),
        priority=np.array([r.priority for r in reqs], np.int64), time_scale=time_scale,
    )
    chains = [r.prefix for r in reqs if isinstance(r.prefix, list)]
    if chains and len(chains) == sum(r.prefix is not None for r in reqs):
        from planner.workload.base import block_chain_tokens

        lists = [r.prefix if isinstance(r.prefix, list) else [] for r in reqs]
        ptr = np.concatenate([[0], np.cumsum([len(v) for v in lists])]).astype(np.int64)
        keys = np.array([h for v in lists for h in v], np.int64)
        return assemble(**common, chain_ptr=ptr, chain_keys=keys,
                        chain_tokens=block_chain_tokens(ptr, prompt, 512))
    if chains:
        problems.append(Problem("workload.requests",
                                "mix of group-id prefixes and block chains", "prefix"))
        return None
    names = sorted({str(r.prefix) for r in reqs if r.prefix is not None})
    code = {n: k for k, n in enumerate(names)}
    group = np.array([code[str(r.prefix)] if r.prefix is not None else -1 for r in reqs])
    tokens = _group_tokens(group, prompt)
    stated = np.array([-1 if r.prefix_tokens is None else r.prefix_tokens for r in reqs])
    tokens = np.where(stated >= 0, stated, tokens)
    return assemble(**common, group=group, group_tokens=tokens)
