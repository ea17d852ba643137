"""tools/ds_fp16_gap.py: the in-process factorial behind the README's account of the ds_fp16 bs=8
gap. Its figures come from the H200; here, that they are what its rows give, and that the paired
effects recover a known effect from made-up rows (which stand for cycles, nothing else)."""
import json
import math

import pytest

from tests.conftest import REPO
from tools.ds_fp16_gap import FACTORS, paired_effects

H200_GAP = REPO / "docs" / "results" / "synthetic-bloom-7b1-1xH200-ds_fp16-gap.jsonl"


def test_each_factor_is_judged_from_pairs_differing_in_it_alone():
    rows = []
    for round_ in range(8):
        drift = 1 + 0.3 * math.sin(round_)  # the host: moves whole rounds, and so cancels in a pair
        for combo in [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]:
            noise = 1 + 0.01 * ((round_ * 7 + sum(combo) * 3) % 5 - 2)
            ms = 2.0 * drift * noise * (1.05 if combo[0] == 0 else 1.0)  # factor 1's first level 5% slower
            rows.append({"round": round_, **dict(zip(FACTORS, combo)), "ms_per_token": ms})
    effects = paired_effects(rows)
    assert {f: e["pairs"] for f, e in effects.items()} == {f: 32 for f in FACTORS}
    assert effects["suite_cycle"]["ratio"] == pytest.approx(1.05, abs=0.01)
    low, high = effects["suite_cycle"]["interval"]
    assert 1 < low < 1.05 < high
    for factor in FACTORS[1:]:
        assert effects[factor]["ratio"] == pytest.approx(1.0, abs=0.02)


def test_the_h200_figures_as_quoted_come_from_the_recorded_cycles():
    load, *rows = map(json.loads, H200_GAP.read_text().splitlines())
    assert load["training_as_loaded"] == 450 and load["modules"] == 457
    assert len(rows) == 240 and {r["round"] for r in rows} == set(range(30))
    quoted = {"suite_cycle": (0.992, [0.974, 1.010]), "eval": (1.002, [0.985, 1.019]),
              "tok_parallel": (0.987, [0.971, 1.002])}
    for factor, effect in paired_effects(rows).items():
        assert (round(effect["ratio"], 3), [round(b, 3) for b in effect["interval"]]) == quoted[factor]
        assert effect["pairs"] == 120
