"""Reads the LLM and accelerator cards in ``models/`` (YAML, one file per card).

The folder is found, in order, from ``$PLANNER_MODELS_DIR``, a ``models/`` folder beside the
scenario file, and the project's own ``models/``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import yaml

from planner.scenario.model import AcceleratorCard, ModelCard

PROJECT_MODELS = Path(__file__).resolve().parent.parent / "models"


def search_dirs(extra: Path | None = None) -> list[Path]:
    dirs = []
    if os.environ.get("PLANNER_MODELS_DIR"):
        dirs.append(Path(os.environ["PLANNER_MODELS_DIR"]))
    if extra is not None:
        dirs.append(extra)
    dirs.append(PROJECT_MODELS)
    return [d for d in dirs if d.is_dir()]


@cache
def _read(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a card must be a mapping")
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
    """The LLM card ``name`` (case-insensitive). Raises KeyError if there is none."""
    cards = _cards("llm", extra)
    path = cards.get(name.lower())
    if path is None:
        raise KeyError(name)
    return model_card_from_dict(_read(path), name)


def load_accelerator(name: str, extra: Path | None = None) -> AcceleratorCard:
    """The accelerator card ``name`` (case-insensitive). Raises KeyError if there is none."""
    cards = _cards("accelerators", extra)
    path = cards.get(name.lower())
    if path is None:
        raise KeyError(name)
    d = _read(path)
    return AcceleratorCard(
        name=str(d.get("name", name)),
        hbm_gb=float(d["hbm_gb"]),
        kv_capacity_gb=float(d["kv_capacity_gb"]),
        prefill_tokens_per_s=float(d["prefill_tokens_per_s"]),
        decode_step_base_s=float(d["decode_step_base_s"]),
        decode_step_per_seq_s=float(d["decode_step_per_seq_s"]),
        max_batch_size=int(d["max_batch_size"]),
        cost_per_hour=float(d["cost_per_hour"]),
    )
