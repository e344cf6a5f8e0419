"""The result blocks of docs/fedmax.md, from the FedMAX runs' CSVs (see docs/make_results.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from results_common import Runs, block, claims_table, held, pm, times


def _rounds_to(accuracy: pd.Series, target: float) -> float:
    """The first round (1-based) whose accuracy reached `target`; NaN if none."""
    hit = np.flatnonzero(accuracy.to_numpy() >= target)
    return float(hit[0] + 1) if len(hit) else np.nan


LAST = 5  # rounds averaged for where a run ends
NAMED = lambda mx, avg, prox: (("FedMAX", mx), ("FedAvg", avg), ("FedProx", prox))


@block("fedmax", "claims", "fedmax_mnist5k_seeds")
def fedmax_claims(runs: Runs) -> str:
    run = "fedmax_mnist5k_seeds"
    jobs = runs.job_folders(run)  # a job: one folder per compared strategy
    c = pd.concat([pd.read_csv(f) for job in jobs for f in sorted(job.glob("*/summary.csv"))], ignore_index=True)
    by = {name: g.set_index("seed").sort_index() for name, g in c.groupby("strategy")}
    avg, prox, mx = by["fedavg"], by["fedprox"], by["fedmax"]
    rounds = {name: [pd.read_csv(job / name / "rounds.csv").accuracy for job in jobs] for name in by}
    # where a run ends: the mean of its last LAST rounds (one round's accuracy on non-IID shards jumps by points)
    end = {name: pd.Series([r.iloc[-LAST:].mean() for r in rs], index=by[name].index) for name, rs in rounds.items()}
    # the paper's 600 against 3000 rounds: the rounds FedAvg ran over those FedMAX needed to reach FedAvg's end
    ratio = pd.Series(
        [len(a) / _rounds_to(m, a.iloc[-LAST:].mean()) for a, m in zip(rounds["fedavg"], rounds["fedmax"])],
        index=avg.index,
    )
    target, n = avg.target_accuracy.iloc[0], int(avg.rounds.iloc[0])
    to_target = lambda s: s.rounds_to_target.fillna(n + 1)  # not reached: counted as one past the last round
    reached = lambda s: f"{s.rounds_to_target.mean():.1f} ({s.rounds_to_target.notna().sum()} of {len(s)} reached)"
    rows = [
        [
            "FedMAX ends more accurate than FedAvg on non-IID data",
            "above FedAvg on FEMNIST, CIFAR-10 and CIFAR-100 (figure 2(b, c))",
            f"mean of rounds {n - LAST + 1}-{n}: FedMAX {pm(end['fedmax'])}, FedAvg {pm(end['fedavg'])}",
            held(end["fedmax"] > end["fedavg"]),
            WHY["fedmax_fedavg"],
        ],
        [
            "... and than FedProx",
            "better than prior techniques",
            f"FedProx {pm(end['fedprox'])}",
            held(end["fedmax"] > end["fedprox"]),
            WHY["fedmax_fedprox"],
        ],
        [
            "FedMAX needs several times fewer rounds for FedAvg's accuracy",
            "600 rounds as good as FedAvg's 3000: up to 5x less communication",
            f"FedAvg's {n} rounds / FedMAX's rounds to FedAvg's end: {times(ratio)}",
            held(ratio > 1),
            WHY["fedmax_rounds"],
        ],
        [
            f"FedMAX reaches {target:.0%} in fewer rounds than FedAvg and FedProx",
            "fewer rounds to a given accuracy",
            f"mean rounds to {target:.0%}: FedMAX {reached(mx)}, FedAvg {reached(avg)}, FedProx {reached(prox)}",
            held((to_target(mx) < to_target(avg)) & (to_target(mx) < to_target(prox))),
            WHY["fedmax_target"],
        ],
        [
            "FedMAX makes the clients' activations diverge less (its mechanism)",
            "lower activation divergence than FedAvg on non-IID data",
            "mean divergence: "
            + ", ".join(f"{k} {pm(s.mean_activation_divergence, 1, 3, '')}" for k, s in NAMED(mx, avg, prox)),
            held(mx.mean_activation_divergence < avg.mean_activation_divergence),
            WHY["fedmax_divergence"],
        ],
    ]
    return claims_table(avg.index, rows)


# Why each claim came out as it did: hand-written; a number in it only as the runs give it.
WHY = {
    "fedmax_fedavg": "Holds on every seed, as it did on the digits (the README's table).",
    "fedmax_fedprox": "FedProx (mu 1), last on the digits, is second here; FedMAX ends above it on every seed"
    " (over two seeds, the first version of this table, one of them had FedProx level).",
    "fedmax_rounds": "The shape holds at a smaller factor than the paper's 5x, which compares 600 rounds with"
    " 3,000; every run here stops after 25 rounds, while FedAvg is still climbing.",
    "fedmax_target": "FedMAX reaches it first on every seed but one, where FedProx reaches it in the same round;"
    " a tie counts as not fewer.",
    "fedmax_divergence": "Not so on the digits, where FedMAX's clients diverged as much as FedAvg's (the README);"
    " on 28x28 images FedMAX's diverge less, and FedProx's, held near the global weights, least.",
}
