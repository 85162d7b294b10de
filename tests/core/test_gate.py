"""The gate's decision code, simulated: false publishes at most alpha over every look, the power the power
check promises, and the inflation a per-look test would have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relora.core.math import gate

ALPHA, MARGIN, LOOKS, TRIALS = 0.05, 0.05, 6, 2000
SLACK = 2 * math.sqrt(ALPHA * (1 - ALPHA) / TRIALS)  # two binomial standard errors at alpha


def correlated_looks(rng: np.random.Generator, *, looks: int, n: int, diff: float, discordance: float,
                     keep: float = 0.6, old_accuracy: float = 0.7) -> np.ndarray:
    """d for `looks` checkpoints on the same gate examples, as training makes them: each look keeps the last
    checkpoint's answer on an example with probability `keep`, else answers afresh; every look's pairs have
    E[d] = diff and the given discordance."""
    negative, positive = (discordance - diff) / 2, (discordance + diff) / 2  # P(o=1, c=0), P(o=0, c=1)
    old = rng.random((TRIALS, n)) < old_accuracy
    p_wrong_given_right, p_right_given_wrong = negative / old_accuracy, positive / (1 - old_accuracy)

    def fresh() -> np.ndarray:
        u = rng.random((TRIALS, n))
        return np.where(old, u >= p_wrong_given_right, u < p_right_given_wrong)

    cand, out = fresh(), []
    for _ in range(looks):
        out.append(cand.astype(float) - old.astype(float))
        cand = np.where(rng.random((TRIALS, n)) < keep, cand, fresh())
    return np.stack(out)


@pytest.mark.parametrize("discordance", [0.08, 0.3])
def test_false_publishes_over_all_looks_stay_at_most_alpha(discordance: float) -> None:
    d = correlated_looks(np.random.default_rng(7), looks=LOOKS, n=512, diff=-MARGIN, discordance=discordance)
    assert abs(d.mean() + MARGIN) < 0.005 and abs(np.abs(d).mean() - discordance) < 0.005  # the simulation is right
    published, _ = gate.publish_over_looks(d, margin=MARGIN, alpha_look=ALPHA / LOOKS)
    assert published.mean() <= ALPHA + SLACK


def test_each_look_at_alpha_alone_would_exceed_alpha() -> None:
    """The same looks, each tested at alpha instead of alpha / looks: the false-publish rate goes over alpha."""
    d = correlated_looks(np.random.default_rng(7), looks=LOOKS, n=512, diff=-MARGIN, discordance=0.3, keep=0.2)
    naive, _ = gate.publish_over_looks(d, margin=MARGIN, alpha_look=ALPHA)
    counted, _ = gate.publish_over_looks(d, margin=MARGIN, alpha_look=ALPHA / LOOKS)
    assert naive.mean() > ALPHA + SLACK > counted.mean()


@pytest.mark.parametrize("discordance", [0.1, 0.2])
def test_power_is_what_the_power_check_promised_at_its_minimal_size(discordance: float) -> None:
    alpha_look = ALPHA / 3
    n = gate.examples_needed(margin=MARGIN, alpha_look=alpha_look, discordance=discordance, most=4096)
    assert n is not None and 256 <= n <= 4096
    # fresh draws (another seed than the check's own), one look at an equally good candidate
    d = correlated_looks(np.random.default_rng(11), looks=1, n=n, diff=0.0, discordance=discordance)
    published, _ = gate.publish_over_looks(d, margin=MARGIN, alpha_look=alpha_look)
    assert published.mean() >= gate.POWER - 2 * math.sqrt(gate.POWER * (1 - gate.POWER) / TRIALS)
    # and one chunk fewer falls short of 80% by the check's own simulation: n is minimal
    assert gate.publish_rate(n=n - 32, spec=gate.paired_spec(margin=MARGIN, alpha=alpha_look), discordance=discordance) < gate.POWER
    assert gate.certifiable_margin(n=n, alpha_look=alpha_look, discordance=discordance) <= MARGIN


def test_no_discordant_pair_at_small_n_does_not_publish() -> None:
    """30 concordant pairs: a Wald bound has zero variance and would publish; the betting test does not."""
    verdict, used = gate.decide(np.zeros((1, 30)), gate.paired_spec(margin=MARGIN, alpha=ALPHA), 30)
    assert verdict[0] == -1 and used[0] == 30


def test_a_far_worse_candidate_is_rejected_after_a_few_dozen_examples() -> None:
    d = correlated_looks(np.random.default_rng(3), looks=1, n=512, diff=-0.25, discordance=0.3)[0]
    verdict, used = gate.decide(d, gate.paired_spec(margin=MARGIN, alpha=ALPHA / 3), 512)
    assert (verdict == -1).all() and np.median(used) <= 64


def test_bounds_agree_with_the_decision() -> None:
    d = correlated_looks(np.random.default_rng(5), looks=1, n=512, diff=0.02, discordance=0.1)[0][:40]
    spec = gate.paired_spec(margin=MARGIN, alpha=ALPHA / 3)
    for row in d:
        verdict, used = gate.decide(row, spec, 512)
        lower, _ = gate.bounds(row[: used], spec)
        assert (lower > -MARGIN) == (verdict == 1)


def test_one_sample_gate_for_an_absolute_threshold() -> None:
    rng = np.random.default_rng(2)
    spec = gate.absolute_spec(threshold=0.8, alpha=ALPHA)
    at_bar = (rng.random((TRIALS, 400)) < 0.8).astype(float)
    above = (rng.random((TRIALS, 400)) < 0.9).astype(float)
    assert (gate.decide(at_bar, spec, 400)[0] == 1).mean() <= ALPHA + SLACK
    assert (gate.decide(above, spec, 400)[0] == 1).mean() > 0.8


def test_a_futility_stop_gives_up_sooner_in_the_grey_zone_and_keeps_power_and_safety() -> None:
    """gate.futility 0.01: a look stops unpublished once the candidate is shown more than 0.01 below the old
    service. At the race's gate (1088 examples, margin 0.05, 3 looks, discordance 0.15) it reads fewer examples
    of a candidate at the margin, publishes an equally good one as often, and never publishes more often."""
    alpha_look, n, disc = ALPHA / 3, 1088, 0.15
    plain = gate.paired_spec(margin=MARGIN, alpha=alpha_look)
    early = gate.paired_spec(margin=MARGIN, alpha=alpha_look, futility=0.01)
    rng = np.random.default_rng(21)
    at_margin, as_good = (gate.simulate_pairs(rng, trials=1000, n=n, diff=diff, discordance=disc) for diff in (-MARGIN, 0.0))
    (v_plain, used_plain), (v_early, used_early) = (gate.decide(at_margin, s, n) for s in (plain, early))
    assert used_early.mean() < 0.8 * used_plain.mean()
    assert (v_early == 1).sum() <= (v_plain == 1).sum() and (v_early == 1).mean() <= alpha_look + SLACK
    power_plain, power_early = ((gate.decide(as_good, s, n)[0] == 1).mean() for s in (plain, early))
    assert power_early <= power_plain and power_plain - power_early <= 0.02
    # the power check simulates it: the certifiable margin stays the race's
    assert gate.certifiable_margin(n=n, alpha_look=alpha_look, discordance=disc, futility=0.01) == \
        gate.certifiable_margin(n=n, alpha_look=alpha_look, discordance=disc) == MARGIN
