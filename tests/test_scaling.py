"""Scaling-law fits recover known laws from noisy synthetic runs; the closed-form optimum against a brute-force scan;
the sweep's FLOP count against ``ModelConfig``; a tiny training run through the package's trainer pieces.

Tolerances of the recovery test (0.5% multiplicative noise on the loss, 5 budgets x 9 sizes, 3 noise seeds):
alpha and beta within 0.03, E within 0.06 nats, the compute-optimal exponent ``beta / (alpha + beta)`` within 0.02,
and the predicted loss of a 10x larger held-out run within 1%. A and B are correlated with the exponents (a
larger alpha with a larger A fits almost as well), so they are checked through those predictions, not one by one.
"""

from __future__ import annotations

import numpy as np
import pytest

from minillama.config import ModelConfig
from minillama.scaling import (
    BESIROGLU,
    CHINCHILLA,
    LossSurface,
    compute_optimal,
    fit_isoflop_minima,
    fit_loss_surface,
    fit_parabola_minimum,
    tokens_for_loss,
    training_flops,
)


def synthetic_sweep(law: LossSurface, seed: int, noise: float = 0.005):
    """IsoFLOP runs from ``law``: 9 sizes from 1/6 to 6 times the optimum at each of 5 budgets, noisy losses."""
    rng = np.random.default_rng(seed)
    budgets = np.repeat([1e18, 3e18, 1e19, 3e19, 1e20], 9)
    N = np.concatenate([compute_optimal(C, law)[0] * np.geomspace(1 / 6, 6, 9) for C in [1e18, 3e18, 1e19, 3e19,
                                                                                          1e20]])
    D = budgets / (6 * N)
    return budgets, N, D, law.loss(N, D) * np.exp(rng.normal(0, noise, len(N)))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU], ids=["chinchilla", "besiroglu"])
def test_fit_loss_surface_recovers_the_law(law, seed):
    budgets, N, D, loss = synthetic_sweep(law, seed)
    fit = fit_loss_surface(N, D, loss)
    E, A, B, alpha, beta = fit  # the public contract: a 5-tuple
    assert abs(alpha - law.alpha) < 0.03 and abs(beta - law.beta) < 0.03
    assert abs(E - law.E) < 0.06
    assert abs(beta / (alpha + beta) - law.beta / (law.alpha + law.beta)) < 0.02
    N_big, D_big = compute_optimal(1e21, law)  # a 10x larger budget than any run
    assert abs(fit.loss(N_big, D_big) / law.loss(N_big, D_big) - 1) < 0.01


def test_fit_loss_surface_without_noise_is_exact():
    law = LossSurface(E=2.0, A=300.0, B=800.0, alpha=0.4, beta=0.3)
    _, N, D, _ = synthetic_sweep(law, 0)
    fit = fit_loss_surface(N, D, law.loss(N, D))
    np.testing.assert_allclose(fit, law, rtol=2e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_isoflop_minima_recover_the_allocation_exponent(seed):
    budgets, N, D, loss = synthetic_sweep(CHINCHILLA, seed)
    fit = fit_isoflop_minima(budgets, N, loss)
    expected_a = CHINCHILLA.beta / (CHINCHILLA.alpha + CHINCHILLA.beta)  # 0.452
    assert abs(fit.a - expected_a) < 0.02 and fit.a + fit.b == pytest.approx(1)
    true_N, _ = compute_optimal(fit.budgets, CHINCHILLA)
    np.testing.assert_allclose(fit.N_opt, true_N, rtol=0.15)
    np.testing.assert_allclose(fit.D_opt, fit.budgets / (6 * fit.N_opt))
    np.testing.assert_allclose(fit.predict(fit.budgets)[0], fit.N_opt, rtol=0.1)


def test_parabola_minimum_by_hand():
    N_min, loss_min, _ = fit_parabola_minimum([1e3, 1e4, 1e5], [3.0, 2.0, 3.0])
    assert N_min == pytest.approx(1e4) and loss_min == pytest.approx(2.0)
    with pytest.raises(ValueError, match="curve upward"):
        fit_parabola_minimum([1e3, 1e4, 1e5], [3.0, 2.0, 1.0 - 1.0])


@pytest.mark.parametrize("law", [CHINCHILLA, BESIROGLU], ids=["chinchilla", "besiroglu"])
@pytest.mark.parametrize("C", [1e20, 5.76e23])
def test_compute_optimal_is_the_minimum_along_the_budget(law, C):
    N_opt, D_opt = compute_optimal(C, law)
    assert training_flops(N_opt, D_opt) == pytest.approx(C)
    N = N_opt * np.geomspace(0.5, 2, 2001)  # brute force: the loss along 6 N D = C
    best = N[np.argmin(law.loss(N, C / (6 * N)))]
    assert best == pytest.approx(N_opt, rel=2e-3)


def test_chinchilla_numbers():
    N, D = compute_optimal(5.76e23, CHINCHILLA)
    assert N == pytest.approx(3.22e10, rel=0.01) and D / N == pytest.approx(93, rel=0.01)
    N, D = compute_optimal(5.76e23, BESIROGLU)  # the replication lands near Chinchilla's 20 tokens per parameter
    assert 15 < D / N < 25


def test_tokens_for_loss_inverts_the_law():
    N = np.array([1e8, 1e9])
    D = tokens_for_loss(N, 2.5, CHINCHILLA)
    np.testing.assert_allclose(CHINCHILLA.loss(N, D), 2.5)
    assert np.isinf(tokens_for_loss(1e8, 2.4, CHINCHILLA))  # a 100M model never gets below E + A/N^alpha = 2.46
    assert tokens_for_loss(1e9, 2.3, CHINCHILLA) == pytest.approx(2.80e11, rel=0.01)


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="at least five runs"):
        fit_loss_surface([1, 2], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="one value per run"):
        fit_isoflop_minima([1, 1, 1], [1, 2], [3, 2, 3])
    with pytest.raises(ValueError, match="at least two budgets"):
        fit_isoflop_minima([1e18] * 3, [1e6, 1e7, 1e8], [3.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        compute_optimal(-1.0, CHINCHILLA)


def test_sweep_flops_are_modelconfigs():
    from minillama.scaling_runs import SEQ_LEN, isoflop_plan, ladder_config, params_and_flops

    config = ladder_config(64, 2, 4)
    N, per_token = params_and_flops(config)
    assert N == config.num_params(embeddings=False) and per_token == config.flops_per_token(SEQ_LEN)
    attention = 12 * config.n_layers * config.dim * SEQ_LEN
    assert per_token == 6 * (N - (2 * config.n_layers + 1) * config.dim) + attention
    for budget, rung in isoflop_plan([1e11, 1e12]):
        tokens = budget / params_and_flops(ladder_config(*rung))[1]
        assert tokens >= 100 * 16 * SEQ_LEN


def test_train_run_learns():
    from minillama.scaling_runs import ladder_config, load_corpus, train_run

    run = train_run(ladder_config(16, 1, 1), load_corpus(), 80_000, curve_points=2)
    assert run["D"] == 78 * 16 * 64 and len(run["curve"]) == 2
    assert run["val_loss"] < np.log(512) - 0.75  # well below the uniform guess (6.24 nats) after 78 steps
    assert run["curve"][0][1] > run["curve"][1][1]
    assert run["C"] == ModelConfig.flops_per_token(ladder_config(16, 1, 1), 64) * run["D"]
