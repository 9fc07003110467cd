from __future__ import annotations

import pytest

from planner import catalog


@pytest.mark.parametrize("name, kv", [
    ("llama-3.1-8b", 131_072), ("llama-3.1-70b", 327_680), ("qwen2.5-7b", 57_344),
    ("deepseek-v3", 70_272),
])
def test_kv_bytes_per_token(name, kv):
    assert catalog.load_model_card(name).kv_bytes_per_token == kv


def test_gqa_formula_uses_kv_heads_not_attention_heads():
    card = catalog.load_model_card("llama-3.1-70b")
    assert card.kv_heads == 8
    assert catalog.kv_bytes_per_token(80, 64, 128, 2) == 8 * card.kv_bytes_per_token


@pytest.mark.parametrize("name", ["a100-80gb", "h100", "h200", "h20", "l40s"])
def test_accelerator_cards_are_complete_and_plausible(name):
    a = catalog.load_accelerator(name)
    assert 0 < a.kv_capacity_gb < a.hbm_gb
    assert a.prefill_tokens_per_s > a.decode_tokens_per_s / 10
    assert a.max_batch_size > 0 and a.cost_per_hour > 0
    # the step model gives more tokens/s at full batch than at batch 1
    assert a.decode_tokens_per_s > 1 / (a.decode_step_base_s + a.decode_step_per_seq_s)


def test_every_card_number_is_sourced_or_an_assumption():
    for path in sorted(catalog.PROJECT_MODELS.glob("accelerators/*.yaml")):
        for line in path.read_text().splitlines():
            key = line.split(":")[0].strip()
            if key in ("hbm_gb", "prefill_tokens_per_s", "max_batch_size", "cost_per_hour",
                       "kv_capacity_gb"):
                text = path.read_text()
                assert "#" in line or "ASSUMPTION" in text.split(line)[0].splitlines()[-1], (path, key)
