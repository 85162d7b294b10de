"""The readiness gate as a test: a paired non-inferiority test by betting, anytime-valid within one look.

Pure numerics (numpy), no model. A look compares a candidate with the old service on the same gate examples,
d_i = candidate_i - old_i in {-1, 0, 1}, and publishes only when H0: E[d] <= -margin is rejected. An absolute
threshold tests H0: E[c] <= threshold on the candidate's own correctness c_i in {0, 1}.

The test is a betting martingale (Waudby-Smith & Ramdas 2023, "Estimating means of bounded random variables
by betting", JRSS-B; the aGRAPA predictable bet of their section 5.3): with x mapped to y in [0, 1] and the null
mean m, the wealth W_t = prod_i (1 + lam_i (y_i - m)), each lam_i chosen from the examples before i and capped
so that no factor falls below 1 - CAP, is a nonnegative supermartingale under H0. By Ville's inequality
P(sup_t W_t >= 1/alpha) <= alpha, at any n and with any number of discordant pairs (no normal approximation,
no variance plug-in that a run of concordant pairs could zero). So the gate may stop as soon as a chunk settles
it, both ways: publish when W >= 1/alpha_look, reject early when the mirrored wealth against H0': E[d] >= -margin
reaches 1/REJECT_ALPHA (rejecting early only lowers the publish rate, and the power check simulates it).

Many looks: each look is a different checkpoint, so the run's alpha is split over its planned looks
(Bonferroni): alpha_look = alpha / looks. Looks happen only when a checkpoint passes a screen on D_val, which
no gate example is in.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

CAP = 0.5  # a bet never risks more than half the wealth on one example
REJECT_ALPHA = 0.05  # the early-reject side's level: a power cost of at most this, never a safety cost
POWER = 0.8
POWER_TRIALS = 2000
POWER_SEED = 20260602
METHOD = ("paired non-inferiority test by betting (Waudby-Smith & Ramdas 2023, aGRAPA bets; Ville's inequality), "
          "alpha split over the planned looks (Bonferroni)")
ONE_SAMPLE_METHOD = ("one-sample test by betting (Waudby-Smith & Ramdas 2023, aGRAPA bets; Ville's inequality), "
                     "alpha split over the planned looks (Bonferroni)")


@dataclass(frozen=True)
class TestSpec:
    """One look's test: x_i in [lo, hi], H0: E[x] <= null; checked at the end of every chunk of examples."""

    null: float
    lo: float
    hi: float
    alpha: float  # this look's level (the run's alpha over its looks)
    chunk: int = 32
    # the early-reject side tests H0': E[x] >= reject_null (default: null); a higher one stops hopeless looks
    # sooner. It only ever stops a look without publishing, so it costs power, never safety
    reject_null: float | None = None

    @property
    def m(self) -> float:
        return (self.null - self.lo) / (self.hi - self.lo)

    @property
    def m_reject(self) -> float:
        null = self.null if self.reject_null is None else self.reject_null
        return (null - self.lo) / (self.hi - self.lo)


def paired_spec(*, margin: float, alpha: float, chunk: int = 32, futility: float | None = None) -> TestSpec:
    """futility: stop a look as soon as the candidate is shown more than this below the old service (at
    REJECT_ALPHA); None: more than the margin below, the default."""
    return TestSpec(null=-margin, lo=-1.0, hi=1.0, alpha=alpha, chunk=chunk,
                    reject_null=None if futility is None else -futility)


def absolute_spec(*, threshold: float, alpha: float, chunk: int = 32) -> TestSpec:
    return TestSpec(null=threshold, lo=0.0, hi=1.0, alpha=alpha, chunk=chunk)


def log_wealth(y: np.ndarray, m: float | np.ndarray, m_down: float | np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Log-wealth paths (..., n) of the bet against H0: E[y] <= m (up) and against H0': E[y] >= m_down (down,
    default m). y in [0, 1]; m and m_down a number or one per row; the bets at i see only y_0..y_{i-1}."""
    y = np.asarray(y, dtype=float)
    m = np.broadcast_to(np.asarray(m, dtype=float), y.shape[:-1])
    m_down = m if m_down is None else np.broadcast_to(np.asarray(m_down, dtype=float), y.shape[:-1])
    up, down = np.zeros(y.shape), np.zeros(y.shape)
    total, spread = np.zeros(y.shape[:-1]), np.zeros(y.shape[:-1])
    w_up, w_down = np.zeros(y.shape[:-1]), np.zeros(y.shape[:-1])
    cap_up, cap_down = CAP / np.maximum(m, 1e-12), CAP / np.maximum(1.0 - m_down, 1e-12)
    for i in range(y.shape[-1]):
        mean, var = (0.5 + total) / (i + 1), (0.25 + spread) / (i + 1)  # WSR's predictable estimates
        gap, gap_down = mean - m, mean - m_down
        lam_up = np.clip(gap / (var + gap**2), 0.0, cap_up)
        lam_down = np.clip(-gap_down / (var + gap_down**2), 0.0, cap_down)
        yi = y[..., i]
        w_up = w_up + np.log1p(lam_up * (yi - m))
        w_down = w_down + np.log1p(lam_down * (m_down - yi))
        up[..., i], down[..., i] = w_up, w_down
        total, spread = total + yi, spread + (yi - mean) ** 2
    return up, down


def chunk_ends(t: int, chunk: int) -> np.ndarray:
    """The positions (0-based) where a look checks its bound: the end of each chunk, and the last example."""
    return np.array([e - 1 for e in range(chunk, t + 1, chunk)] + ([t - 1] if t % chunk else []))


def _first(hit: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis; the length where there is none."""
    return np.where(hit.any(axis=-1), hit.argmax(axis=-1), hit.shape[-1])


def decide(x: np.ndarray, spec: TestSpec, n_total: int) -> tuple[np.ndarray, np.ndarray]:
    """Verdicts for rows of outcomes x (..., t), t <= n_total, looked at the end of each chunk:
    1 publish, -1 reject, 0 go on (t < n_total and neither bound is crossed). Returns (verdict, examples used)."""
    x = np.asarray(x, dtype=float)
    t = x.shape[-1]
    ends = chunk_ends(t, spec.chunk)
    up, down = log_wealth((x - spec.lo) / (spec.hi - spec.lo), spec.m, spec.m_reject)
    up, down = up[..., ends], down[..., ends]
    first_up = _first(up >= math.log(1 / spec.alpha))
    first_down = _first(down >= math.log(1 / REJECT_ALPHA))
    published = first_up < np.minimum(first_down, len(ends))
    rejected = ~published & (first_down < len(ends))
    verdict = np.where(published, 1, np.where(rejected, -1, 0))
    if t >= n_total:
        verdict = np.where(verdict == 0, -1, verdict)  # the gate set ran out: not certified
    at = np.minimum(first_up, first_down)
    used = np.where(verdict == 0, t, ends[np.minimum(at, len(ends) - 1)] + 1)
    return verdict, used


def bounds(x: np.ndarray, spec: TestSpec, grid: int = 401, reject_alpha: float = REJECT_ALPHA) -> tuple[float, float]:
    """The confidence sequence's (lower, upper) bounds on E[x] after the examples x (one look), at the look's
    alpha (lower) and REJECT_ALPHA (upper), over the same chunk ends as decide: for the record."""
    x = np.asarray(x, dtype=float)
    nulls = np.linspace(spec.lo, spec.hi, grid)[1:-1]
    m = (nulls - spec.lo) / (spec.hi - spec.lo)
    y = np.broadcast_to((x - spec.lo) / (spec.hi - spec.lo), (len(m), len(x)))
    up, down = log_wealth(y, m)
    ends = chunk_ends(len(x), spec.chunk)
    rejected_below = up[:, ends].max(axis=1) >= math.log(1 / spec.alpha)  # E[x] <= null rejected
    rejected_above = down[:, ends].max(axis=1) >= math.log(1 / reject_alpha)  # E[x] >= null rejected
    lower = float(nulls[rejected_below].max()) if rejected_below.any() else spec.lo
    upper = float(nulls[rejected_above].min()) if rejected_above.any() else spec.hi
    return lower, upper


def interval(d: list[float], *, alpha: float) -> tuple[float, float]:
    """A (1 - alpha) two-sided interval on the mean of paired differences in [-1, 1], looked at once."""
    spec = TestSpec(null=0.0, lo=-1.0, hi=1.0, alpha=alpha / 2, chunk=max(len(d), 1))
    return bounds(np.asarray(d, dtype=float), spec, reject_alpha=alpha / 2)


def simulate_pairs(rng: np.random.Generator, *, trials: int, n: int, diff: float, discordance: float) -> np.ndarray:
    """d_i in {-1, 0, 1}: discordant with probability `discordance`, E[d] = diff."""
    plus = (discordance + diff) / 2
    u = rng.random((trials, n))
    return np.where(u < plus, 1.0, np.where(u < discordance, -1.0, 0.0))


@functools.lru_cache(maxsize=256)
def publish_rate(*, n: int, spec: TestSpec, discordance: float, diff: float = 0.0, trials: int = POWER_TRIALS
                 ) -> float:
    """The share of simulated looks (spec: a paired one) that publish a candidate whose true difference is
    `diff` (seeded)."""
    rng = np.random.default_rng(POWER_SEED)
    d = simulate_pairs(rng, trials=trials, n=n, diff=diff, discordance=discordance)
    verdict, _ = decide(d, spec, n)
    return float((verdict == 1).mean())


MARGIN_GRID = tuple(round(0.005 * k, 3) for k in range(1, 101))  # 0.005 .. 0.5


def certifiable_margin(*, n: int, alpha_look: float, discordance: float, chunk: int = 32,
                       futility: float | None = None) -> float | None:
    """The smallest margin on MARGIN_GRID that a gate of n examples certifies with POWER for a candidate as good
    as the old service whose pairs disagree at `discordance`; None when not even 0.5."""
    if n <= 0:
        return None
    lo, hi = 0, len(MARGIN_GRID) - 1
    def rate(margin: float) -> float:
        stop = None if futility is None else min(futility, margin)
        return publish_rate(n=n, spec=paired_spec(margin=margin, alpha=alpha_look, chunk=chunk, futility=stop),
                            discordance=discordance)

    if rate(MARGIN_GRID[hi]) < POWER:
        return None
    while lo < hi:  # the publish rate rises with the margin
        mid = (lo + hi) // 2
        ok = rate(MARGIN_GRID[mid]) >= POWER
        lo, hi = (lo, mid) if ok else (mid + 1, hi)
    return MARGIN_GRID[lo]


def examples_needed(*, margin: float, alpha_look: float, discordance: float, chunk: int = 32,
                    most: int = 20000, futility: float | None = None) -> int | None:
    """The smallest gate size (a multiple of chunk) that certifies `margin` with POWER; None above `most`."""
    spec = paired_spec(margin=margin, alpha=alpha_look, chunk=chunk, futility=futility)

    def ok(n: int) -> bool:
        return publish_rate(n=n, spec=spec, discordance=discordance) >= POWER

    if not ok(most):
        return None
    lo, hi = 1, most // chunk
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid * chunk) else (mid + 1, hi)
    return lo * chunk


def publish_over_looks(d_looks: np.ndarray, *, margin: float, alpha_look: float, chunk: int = 32
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A run's looks, in order: look k tests checkpoint k's pairs d_looks[k] (trials, n) at alpha_look, and the
    first look that publishes ends the run. Returns (published per trial, gate examples the looks scored)."""
    looks, trials, n = d_looks.shape
    published, used = np.zeros(trials, dtype=bool), np.zeros(trials, dtype=int)
    spec = paired_spec(margin=margin, alpha=alpha_look, chunk=chunk)
    for k in range(looks):
        verdict, examples = decide(d_looks[k], spec, n)
        used += np.where(published, 0, examples)
        published |= verdict == 1
    return published, used
