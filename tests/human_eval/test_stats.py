"""Statistics on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from experiments.human_eval import stats


def test_mean_ci_matches_the_t_interval_computed_by_hand():
    # values 1..5: mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445105
    result = stats.mean_ci([1, 2, 3, 4, 5])
    half = 2.776445105 * math.sqrt(2.5) / math.sqrt(5)
    assert result["mean"] == 3
    assert result["ci_low"] == pytest.approx(3 - half, abs=1e-6)
    assert result["ci_high"] == pytest.approx(3 + half, abs=1e-6)
    assert stats.mean_ci([1, 5, 5, 5], bounds=(1, 5))["ci_high"] == 5
    assert stats.mean_ci([4])["ci_low"] is None and stats.mean_ci([])["mean"] is None


def test_krippendorff_interval_alpha_by_hand():
    # Two units: (1, 2) and (3, 3). D_o = 2/4 = 0.5; D_e = 22/(4·3) = 11/6; α = 1 − 0.5/(11/6) = 8/11.
    units = [{"x": 1, "y": 2}, {"x": 3, "y": 3}]
    assert stats.krippendorff_alpha(units, level="interval") == pytest.approx(8 / 11, abs=1e-9)


def test_krippendorff_is_one_on_perfect_agreement_and_none_when_undefined():
    assert stats.krippendorff_alpha([{"x": 1, "y": 1}, {"x": 4, "y": 4}, {"x": 5, "y": 5}]) == pytest.approx(
        1.0
    )
    assert stats.krippendorff_alpha([{"x": 3}, {"y": 4}]) is None  # no unit rated twice
    assert stats.krippendorff_alpha([{"x": 3, "y": 3}]) is None  # no variation at all


def test_cohen_kappa_by_hand():
    # 4 items, agree on 3: p_o = 0.75. Marginals: x a,a,b,b; y a,a,b,a → p_e = .5·.75 + .5·.25 = .5.
    # κ = (0.75 − 0.5)/(1 − 0.5) = 0.5
    assert stats.cohen_kappa(["a", "a", "b", "b"], ["a", "a", "b", "a"]) == pytest.approx(0.5)


def test_fleiss_kappa_by_hand():
    # 4 items × 2 raters over {a, b}: [a,a], [b,b], [a,b], [a,a].
    # P_i: 1, 1, 0, 1 → P̄ = 0.75. p_a = 5/8, p_b = 3/8 → P_e = 34/64. κ = (0.75 − 34/64)/(1 − 34/64) = 7/15.
    units = [["a", "a"], ["b", "b"], ["a", "b"], ["a", "a"]]
    assert stats.fleiss_kappa(units, ["a", "b", "tie"]) == pytest.approx(7 / 15)


def test_bradley_terry_two_models_by_hand():
    # Model 0 wins 3 of 4: θ0 − θ1 = ln 3; sum to zero → θ0 = ln3/2.
    # Var(θ0 − θ1) = 1/(n·p·q) = 1/(4·.75·.25) = 4/3; Var(θ0) = 1/3 → half-width 1.96·sqrt(1/3).
    result = stats.bradley_terry(2, [(0, 1, 1.0)] * 3 + [(1, 0, 1.0)])
    assert result["scores"][0] == pytest.approx(math.log(3) / 2, abs=1e-4)
    assert result["scores"][1] == pytest.approx(-math.log(3) / 2, abs=1e-4)
    half = stats.Z95 * math.sqrt(1 / 3)
    assert result["ci_high"][0] - result["scores"][0] == pytest.approx(half, abs=1e-3)


def test_bradley_terry_counts_a_tie_as_half_a_win():
    # Two ties and one win for model 1: score of 1 = 2/3 → θ1 − θ0 = ln 2.
    result = stats.bradley_terry(2, [(0, 1, 0.5), (0, 1, 0.5), (1, 0, 1.0)])
    assert result["scores"][1] - result["scores"][0] == pytest.approx(math.log(2), abs=1e-4)


def test_bradley_terry_orders_three_models():
    comparisons = (
        [(0, 1, 1.0)] * 4
        + [(1, 0, 1.0)]
        + [(1, 2, 1.0)] * 4
        + [(2, 1, 1.0)]
        + [(0, 2, 1.0)] * 3
        + [(2, 0, 1.0)]
    )
    scores = stats.bradley_terry(3, comparisons)["scores"]
    assert scores[0] > scores[1] > scores[2] and sum(scores) == pytest.approx(0, abs=1e-9)


def test_position_bias_flags_a_left_side_that_always_wins():
    fair = stats.position_bias(["a", "b"] * 10 + ["tie"])
    assert fair["left_win_rate"] == 0.5 and not fair["biased"] and fair["ties"] == 1
    biased = stats.position_bias(["a"] * 18 + ["b"] * 2)
    assert biased["left_win_rate"] == 0.9 and biased["biased"] and biased["p_value"] < 0.001
