"""Reads the LLM and accelerator cards in ``models/`` (YAML, one file per card).

The folder is found, in order, from ``$PLANNER_MODELS_DIR``, a ``models/`` folder beside the
scenario file, and the project's own ``models/``.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

import yaml

from planner.scenario.errors import Problem, ScenarioError, reason
from planner.scenario.model import AcceleratorCard, ModelCard

log = logging.getLogger(__name__)
PROJECT_MODELS = Path(__file__).resolve().parent.parent / "models"


def search_dirs(extra: Path | None = None) -> list[Path]:
    dirs = []
    if os.environ.get("PLANNER_MODELS_DIR"):
        env = Path(os.environ["PLANNER_MODELS_DIR"])
        if not env.is_dir():  # a typo falls back to the project's cards: say so (the CLI stops)
            _warn_missing_dir(str(env))
        dirs.append(env)
    if extra is not None:
        dirs.append(extra)
    dirs.append(PROJECT_MODELS)
    return [d for d in dirs if d.is_dir()]


def check_models_dir() -> None:
    """A ``PLANNER_MODELS_DIR`` that is not a folder is bad input (ScenarioError naming it)."""
    env = os.environ.get("PLANNER_MODELS_DIR")
    if env and not Path(env).is_dir():
        raise ScenarioError("PLANNER_MODELS_DIR", [Problem(
            "PLANNER_MODELS_DIR", "not a folder of model and accelerator cards", env)])


@cache
def _warn_missing_dir(path: str) -> None:
    log.warning("PLANNER_MODELS_DIR=%s is not a folder: the project's own cards are used", path)


@cache
def _read(path: Path) -> dict:
    """A card file as a mapping, or ScenarioError naming the card file: unreadable, not YAML
    (the scenario loader's strict YAML: no key twice, no alias bomb), or not a mapping."""
    from planner.scenario.load import _Refused, load_yaml

    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [Problem("<file>", f"cannot read: {exc}", path.name)]) \
            from None
    except (yaml.YAMLError, _Refused, ValueError, RecursionError) as exc:
        raise ScenarioError(str(path), [Problem("<file>", f"not valid yaml: {reason(exc)}",
                                                path.name)]) from None
    if not isinstance(data, dict):
        raise ScenarioError(str(path), [Problem("<top>", "a card must be a mapping",
                                                type(data).__name__)])
    return data


def _cards(kind: str, extra: Path | None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(search_dirs(extra)):  # earlier folders win
        for p in sorted((d / kind).glob("*.y*ml")):
            found[p.stem.lower()] = p
    return found


def llm_names(extra: Path | None = None) -> list[str]:
    return sorted(_cards("llm", extra))


def accelerator_names(extra: Path | None = None) -> list[str]:
    return sorted(_cards("accelerators", extra))


def kv_bytes_per_token(
    layers: int, kv_heads: int, head_dim: int, bytes_per_element: int
) -> int:
    """K and V per layer per KV head (GQA-aware): ``2 * layers * kv_heads * head_dim * bytes``."""
    return 2 * layers * kv_heads * head_dim * bytes_per_element


def model_card_from_dict(data: dict, name: str = "inline") -> ModelCard:
    kv = data.get("kv_bytes_per_token")
    if kv is None:
        kv = kv_bytes_per_token(
            int(data["layers"]), int(data["kv_heads"]), int(data["head_dim"]),
            int(data.get("bytes_per_element", 2)),
        )
    return ModelCard(
        name=str(data.get("name", name)),
        kv_bytes_per_token=int(kv),
        layers=data.get("layers"),
        kv_heads=data.get("kv_heads"),
        head_dim=data.get("head_dim"),
        bytes_per_element=data.get("bytes_per_element"),
        params_billion=data.get("params_billion"),
    )


def load_model_card(name: str, extra: Path | None = None) -> ModelCard:
    """The LLM card ``name`` (case-insensitive): KeyError if there is none, ScenarioError
    naming the card file if it breaks the inline model's schema."""
    from pydantic import ValidationError

    from planner.scenario.load import pydantic_problems
    from planner.scenario.schema import ModelSpec

    path = _cards("llm", extra).get(name.lower())
    if path is None:
        raise KeyError(name)
    try:
        m = ModelSpec.model_validate({"name": name, **_read(path)})
    except ValidationError as exc:
        raise ScenarioError(str(path), pydantic_problems(exc)) from None
    return model_card_from_dict(m.model_dump(exclude_none=True), name)


# the fields of an accelerator card: a cluster may override each (same names, same ranges)
ACCELERATOR_FIELDS = ("hbm_gb", "kv_capacity_gb", "prefill_tokens_per_s", "decode_step_base_s",
                      "decode_step_per_seq_s", "max_batch_size", "cost_per_hour")


def load_accelerator(name: str, extra: Path | None = None) -> AcceleratorCard:
    """The accelerator card ``name`` (case-insensitive): KeyError if there is none, ScenarioError
    naming the card file when a field is missing, unknown or out of the range a cluster's
    override of it would have."""
    from pydantic import ValidationError

    from planner.scenario.load import pydantic_problems
    from planner.scenario.schema import ClusterSpec

    path = _cards("accelerators", extra).get(name.lower())
    if path is None:
        raise KeyError(name)
    d = dict(_read(path))
    card_name = str(d.pop("name", name))
    problems = [Problem(f, "required in an accelerator card") for f in ACCELERATOR_FIELDS
                if f not in d]
    problems += [Problem(k, "unknown field", d[k]) for k in d if k not in ACCELERATOR_FIELDS]
    try:  # the ranges of a cluster's overrides of the same fields
        ClusterSpec.model_validate({"name": card_name, "role": "mixed", "replicas": 1,
                                    **{k: v for k, v in d.items() if k in ACCELERATOR_FIELDS}})
    except ValidationError as exc:
        problems += pydantic_problems(exc)
    if problems:
        raise ScenarioError(str(path), problems)
    return AcceleratorCard(
        name=card_name,
        hbm_gb=float(d["hbm_gb"]),
        kv_capacity_gb=float(d["kv_capacity_gb"]),
        prefill_tokens_per_s=float(d["prefill_tokens_per_s"]),
        decode_step_base_s=float(d["decode_step_base_s"]),
        decode_step_per_seq_s=float(d["decode_step_per_seq_s"]),
        max_batch_size=int(d["max_batch_size"]),
        cost_per_hour=float(d["cost_per_hour"]),
    )
