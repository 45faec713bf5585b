"""A/B statistics: false positives under peeking (A/A) and power / users to detection (A/B).

Workload (seeded, vectorised numpy Bernoulli streams, no HTTP): a binary per-user metric
with baseline rate 10 %. Users arrive in batches of 100 (50 per arm); the test is read after
every batch, up to 1,000 looks (100,000 users).

* A/A, 2,000 repeated experiments: the share that ever rejects at alpha = 0.05 with the
  always-valid mSPRT (normal mixture, tau = 0.03) against the naive two-proportion z-test
  read at every look (and the z-test read once, at the end).
* A/B, 500 experiments per effect size (relative lift 2 %, 5 %, 10 %, 20 %): the share
  detected within the horizon (power) and the median users at detection.
"""

from __future__ import annotations

import time

from common import write_result

from liveshelf.experiment.stats import simulate_peeking

BASE = 0.10
LOOKS = 1000
USERS_PER_LOOK = 100
TAU = 0.03
ALPHA = 0.05


def main() -> None:
    rows = []
    t = time.process_time()
    aa = simulate_peeking(
        BASE, BASE, reps=2000, looks=LOOKS, users_per_look=USERS_PER_LOOK, tau=TAU, alpha=ALPHA, seed=11
    )
    rows.append(
        {
            "test": "A/A",
            "lift": 0.0,
            "reps": aa.reps,
            "msprt_reject": aa.sequential_reject,
            "naive_peeking_reject": aa.naive_reject,
            "final_look_reject": aa.final_reject,
            "median_users_to_detect": aa.median_users_to_detect,
            "cpu_s": round(time.process_time() - t, 2),
        }
    )
    for lift in (0.02, 0.05, 0.10, 0.20):
        t = time.process_time()
        r = simulate_peeking(
            BASE,
            BASE * (1 + lift),
            reps=500,
            looks=LOOKS,
            users_per_look=USERS_PER_LOOK,
            tau=TAU,
            alpha=ALPHA,
            seed=int(lift * 1000),
        )
        rows.append(
            {
                "test": "A/B",
                "lift": lift,
                "reps": r.reps,
                "msprt_reject": r.sequential_reject,
                "naive_peeking_reject": r.naive_reject,
                "final_look_reject": r.final_reject,
                "median_users_to_detect": r.median_users_to_detect,
                "cpu_s": round(time.process_time() - t, 2),
            }
        )
    write_result(
        "ab",
        rows,
        baseline_rate=BASE,
        looks=LOOKS,
        users_per_look=USERS_PER_LOOK,
        tau=TAU,
        alpha=ALPHA,
        note="msprt_reject is the false-positive rate for A/A and the power for A/B; "
        "naive_peeking_reject reads a fixed-horizon z-test after every look",
    )


if __name__ == "__main__":
    main()
