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


H100 = (catalog.PROJECT_MODELS / "accelerators" / "h100.yaml").read_text()


def _scenario_with_card(tmp_path, card_text: str, llm_text: str | None = None):
    """A scenario beside a models/ folder holding one accelerator card 'mycard' (and, if
    given, one LLM card 'myllm'); returns the loader's error lines ([] when it loads)."""
    from planner import load_scenario
    from planner.scenario.errors import ScenarioError

    (tmp_path / "models" / "accelerators").mkdir(parents=True)
    (tmp_path / "models" / "accelerators" / "mycard.yaml").write_text(card_text)
    model = "llama-3.1-8b"
    if llm_text is not None:
        (tmp_path / "models" / "llm").mkdir()
        (tmp_path / "models" / "llm" / "myllm.yaml").write_text(llm_text)
        model = "myllm"
    f = tmp_path / "s.yaml"
    f.write_text(f"name: s\nmodel: {model}\ndatacenters:\n  - name: a\n    clusters:\n"
                 "      - {name: m, role: mixed, accelerator: mycard, replicas: 1}\n"
                 "workload:\n  requests:\n    - {id: r1, prompt_tokens: 100, output_tokens: 10}\n")
    try:
        load_scenario(f)
    except ScenarioError as exc:
        return str(exc).splitlines()
    return []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda t: t.replace("prefill_tokens_per_s: 30000", "prefill_tokens_per_s: -30000"),
     "prefill_tokens_per_s: Input should be greater than 0 (-30000)"),
    (lambda t: t.replace("kv_capacity_gb: 56", "kv_capacity_gb: lots"),
     "kv_capacity_gb: Input should be a valid number"),
    (lambda t: t.replace("max_batch_size: 256", ""),
     "max_batch_size: required in an accelerator card (missing)"),
    (lambda t: t + "colour: red\n", "colour: unknown field ('red')"),
    (lambda t: t + "  bad: [indent\n", "<file>: not valid yaml"),
    (lambda t: t + "cost_per_hour: 3\n", "<file>: not valid yaml: key 'cost_per_hour' given twice"),
    (lambda t: "- a list\n", "<top>: a card must be a mapping ('list')"),
])
def test_a_bad_accelerator_card_is_one_line_naming_the_card_and_its_field(tmp_path, change,
                                                                          expected):
    lines = _scenario_with_card(tmp_path, change(H100))
    card = tmp_path / "models" / "accelerators" / "mycard.yaml"
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{tmp_path / 's.yaml'}: datacenters[0].clusters[0].accelerator: "
                               f"bad card {card}: ")
    assert expected in lines[0]


def test_a_good_card_beside_the_scenario_loads_and_a_bad_llm_card_names_its_field(tmp_path):
    assert _scenario_with_card(tmp_path, H100) == []
    lines = _scenario_with_card(tmp_path / "x", H100, "layers: 32\nkv_heads: -8\nhead_dim: 128\n")
    assert len(lines) == 1 and "model: bad card" in lines[0] and \
        "kv_heads: Input should be greater than 0 (-8)" in lines[0]
