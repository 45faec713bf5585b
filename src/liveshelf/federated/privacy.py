"""Client-level differential privacy for federated rounds: the noise for a target ε, and the ε spent.

Flower's DP wrapper (``DifferentialPrivacyClientSideFixedClipping``) has every client clip its
update to L2 norm ``C`` (``fixedclipping_mod``) and adds Gaussian noise of standard deviation
``z * C / m`` to the mean of the ``m`` updates: the Gaussian mechanism on each round's release,
with one *client* (all of its users' data) as the unit of privacy. Every client takes part in
every round, so there is no sampling amplification, and ``R`` rounds compose as ``R`` Gaussian
mechanisms with noise multiplier ``z`` (add-or-remove-one neighbouring populations).

The accounting is opacus' RDP accountant with sampling rate 1. (Flower's own accountant needs the
``dp-accounting`` package, whose ``attrs<24`` pin conflicts with this project's test tools; the
RDP bound for sampling rate 1 is the same analytic Gaussian composition.)
"""

from __future__ import annotations

import math

from liveshelf.errors import ConfigError


def check_epsilon(epsilon: float, delta: float) -> None:
    if isinstance(epsilon, bool) or not math.isfinite(float(epsilon)) or float(epsilon) <= 0:
        raise ConfigError(
            f"--dp-epsilon must be a finite number > 0 (the privacy budget of each client over all "
            f"rounds; about 8 is a common choice). Got {epsilon!r} instead."
        )
    if not 0 < float(delta) < 1:
        raise ConfigError(f"--dp-delta must be in (0, 1), e.g. 1e-5. Got {delta!r} instead.")


def noise_for_epsilon(epsilon: float, delta: float, rounds: int) -> float:
    """The noise multiplier ``z`` that spends exactly ``epsilon`` (at ``delta``) over ``rounds`` rounds."""
    check_epsilon(epsilon, delta)
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=float(epsilon),
            target_delta=float(delta),
            sample_rate=1.0,
            steps=int(rounds),
            accountant="rdp",
            epsilon_tolerance=0.005,
        )
    )


def epsilon_spent(noise_multiplier: float, delta: float, rounds: int) -> float:
    """The ε (at ``delta``) that ``rounds`` rounds with noise multiplier ``z`` have spent."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), 1.0, int(rounds))]
    return float(acc.get_epsilon(float(delta)))
