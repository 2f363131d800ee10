"""Scaling laws (chapter 11): how the loss falls with parameters N and tokens D, and how big a model a budget buys.

Training costs ``C ~ 6 N D`` FLOPs (``ModelConfig.flops_per_token`` counts it exactly, attention included). Hoffmann
et al. 2022 (Chinchilla) fit the loss two ways, both here:

- approach 2, :func:`fit_isoflop_minima`: at each budget C, models of several sizes; a parabola in ``log N`` gives
  the best size ``N_opt(C)``, and a line through the optima in log-log space gives ``N_opt ~ C^a``, ``D_opt ~ C^b``;
- approach 3, :func:`fit_loss_surface`: ``L(N, D) = E + A / N^alpha + B / D^beta`` fitted to every run, with a Huber
  loss on ``log L`` minimized by L-BFGS from several starting points; :func:`compute_optimal` then minimizes it
  along ``6 N D = C`` in closed form.

Only numpy and scipy: the training runs behind the book's numbers are in :mod:`minillama.scaling_runs`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.special import huber


class LossSurface(NamedTuple):
    """``L(N, D) = E + A / N^alpha + B / D^beta`` (nats per token); unpacks as ``E, A, B, alpha, beta``."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N, D):
        """The predicted loss of a model with ``N`` parameters trained on ``D`` tokens."""
        return self.E + self.A / np.asarray(N, float) ** self.alpha + self.B / np.asarray(D, float) ** self.beta


# Hoffmann et al. 2022, appendix D.2, and the refit of their data by Besiroglu et al. 2024 (table 1).
CHINCHILLA = LossSurface(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
BESIROGLU = LossSurface(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def training_flops(N, D):
    """``6 N D``: 2 FLOPs per weight and token forward, 4 backward (Kaplan et al. 2020)."""
    return 6 * np.asarray(N, float) * np.asarray(D, float)


def compute_optimal(C, params) -> tuple[np.ndarray, np.ndarray]:
    """The ``(N, D)`` that minimize ``params``' loss at budget ``C = 6 N D`` (Hoffmann et al. 2022, eq. 4).

    Setting the derivative of ``A N^-alpha + B (C / 6N)^-beta`` to zero gives ``N_opt = G (C/6)^(beta/(alpha+beta))``
    and ``D_opt = (C/6) / N_opt`` with ``G = (alpha A / (beta B))^(1/(alpha+beta))``. Example: Chinchilla's fit at
    Chinchilla's budget, ``C = 5.76e23``, gives ``N = 3.2e10``, ``D = 3.0e12`` (93 tokens per parameter).
    """
    E, A, B, alpha, beta = params
    C = np.asarray(C, float)
    if np.any(C <= 0):
        raise ValueError(f"compute budgets must be positive, got {C}")
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    N = G * (C / 6) ** (beta / (alpha + beta))
    return N, C / 6 / N


def tokens_for_loss(N, target, params):
    """Tokens a model of ``N`` parameters needs to reach loss ``target`` (``inf`` where it never can: the
    ``E + A / N^alpha`` floor of its size is at or above the target). Inverts ``B / D^beta = target - E - A/N^alpha``.
    """
    E, A, B, alpha, beta = params
    gap = target - E - A / np.asarray(N, float) ** alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (B / np.where(gap > 0, gap, 1.0)) ** (1 / beta), np.inf)


# --- approach 3: the parametric fit ------------------------------------------------------------------------------


def _huber_objective(theta, log_N, log_D, log_loss, delta):
    """Hoffmann et al.'s objective and its gradient: ``sum Huber_delta(LSE(a - alpha log N, b - beta log D, e)
    - log L)`` over the runs, with ``A = e^a, B = e^b, E = e^e``; the log-sum-exp keeps every term positive."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)])  # (3, runs)
    top = terms.max(axis=0)
    predicted = top + np.log(np.exp(terms - top).sum(axis=0))  # log of the predicted loss
    residual = predicted - log_loss
    weights = np.exp(terms - predicted)  # d predicted / d term, a softmax over the three terms
    slope = np.clip(residual, -delta, delta)  # derivative of the Huber loss
    gradient = np.array([np.sum(slope * weights[0]), np.sum(slope * weights[1]), np.sum(slope * weights[2]),
                         -np.sum(slope * weights[0] * log_N), -np.sum(slope * weights[1] * log_D)])
    return float(np.sum(huber(delta, residual))), gradient


def _starting_points(N, D, loss, delta, count):
    """The ``count`` best starts over a grid of exponents: for each ``(alpha, beta)`` in steps of 0.05 the model is
    linear in ``(E, A, B)``, which non-negative least squares solves at once."""
    data = (np.log(N), np.log(D), np.log(loss), delta)
    scored = []
    for alpha, beta in itertools.product(np.arange(0.05, 1.51, 0.05), repeat=2):
        columns = np.stack([np.ones_like(N), N**-alpha, D**-beta], axis=1)  # (runs, 3)
        E, A, B = np.maximum(nnls(columns, loss)[0], 1e-6)
        theta = np.array([np.log(A), np.log(B), np.log(E), alpha, beta])
        scored.append((_huber_objective(theta, *data)[0], theta))
    scored.sort(key=lambda pair: pair[0])
    return [theta for _, theta in scored[:count]]


def fit_loss_surface(N, D, loss, *, delta: float = 1e-3, starts: int = 4) -> LossSurface:
    """Fit ``L = E + A / N^alpha + B / D^beta`` to runs (Chinchilla's approach 3); returns ``(E, A, B, alpha, beta)``.

    The Huber loss (``delta = 1e-3``, as Hoffmann et al.) on ``log L`` keeps a few outlying runs from steering the
    fit. The objective has local minima, so L-BFGS runs from several starting points and the best end point wins.
    Hoffmann et al. start from a fixed grid of all five parameters; we pick the ``starts`` best points of a finer
    grid of the two exponents (:func:`_starting_points`), which is faster and, on the recovery test, as good.
    Besiroglu et al. 2024 traced a bad Chinchilla estimate to an optimizer stopped too early: the tolerance is tight.
    """
    N, D, loss = (np.asarray(x, float).ravel() for x in (N, D, loss))
    if not len(N) == len(D) == len(loss):
        raise ValueError(f"N, D and loss must have one value per run, got {len(N)}, {len(D)}, {len(loss)}")
    if len(N) < 5:
        raise ValueError(f"five parameters need at least five runs, got {len(N)}")
    if np.any(N <= 0) or np.any(D <= 0) or np.any(loss <= 0):
        raise ValueError("N, D and loss must be positive")
    data = (np.log(N), np.log(D), np.log(loss), delta)
    best = None
    for start in _starting_points(N, D, loss, delta, starts):
        result = minimize(_huber_objective, start, args=data, jac=True, method="L-BFGS-B",
                          options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 5000})
        if best is None or result.fun < best.fun:
            best = result
    a, b, e, alpha, beta = best.x
    return LossSurface(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                       beta=float(beta))


# --- approach 2: IsoFLOP minima ----------------------------------------------------------------------------------


@dataclass
class IsoFLOPFit:
    """The optimum of each budget and the power laws through them: ``N_opt = N_coef * C^a``, ``D_opt = D_coef * C^b``.

    ``a + b = 1`` (``D_opt = C / 6 N_opt``); Chinchilla found ``a = 0.49``, ``b = 0.51`` with approach 2.
    """

    budgets: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    loss_opt: np.ndarray
    parabolas: np.ndarray  # (budgets, 3): loss = p0 (ln N)^2 + p1 ln N + p2 per budget
    a: float
    N_coef: float
    b: float
    D_coef: float

    def predict(self, C) -> tuple[np.ndarray, np.ndarray]:
        """``(N_opt, D_opt)`` at budget(s) ``C`` from the fitted power laws."""
        C = np.asarray(C, float)
        return self.N_coef * C**self.a, self.D_coef * C**self.b


def fit_parabola_minimum(N, loss) -> tuple[float, float, np.ndarray]:
    """The minimum of ``loss = p0 (ln N)^2 + p1 ln N + p2`` fitted by least squares: ``(N_min, loss_min, p)``.

    Example: losses ``[3, 2, 3]`` at ``N = [1e3, 1e4, 1e5]`` are symmetric in ``ln N``: the minimum is at ``1e4``.
    """
    x, loss = np.log(np.asarray(N, float)), np.asarray(loss, float)
    if len(x) < 3:
        raise ValueError(f"a parabola needs at least three model sizes per budget, got {len(x)}")
    p = np.polyfit(x, loss, 2)
    if p[0] <= 0:
        raise ValueError(f"the losses at N = {np.round(np.exp(x)).astype(int).tolist()} do not curve upward on both "
                         f"sides of a minimum: train sizes on both sides of the best one")
    x_min = -p[1] / (2 * p[0])
    return float(np.exp(x_min)), float(np.polyval(p, x_min)), p


def fit_isoflop_minima(budgets, N, loss) -> IsoFLOPFit:
    """Chinchilla's approach 2: one parabola in ``ln N`` per compute budget, then ``N_opt ~ C^a`` through the minima.

    ``budgets``, ``N`` and ``loss`` hold one value per run (runs of the same budget share its value). ``D_opt`` is
    ``C / 6 N_opt``, so ``b = 1 - a``.
    """
    budgets, N, loss = (np.asarray(x, float).ravel() for x in (budgets, N, loss))
    if not len(budgets) == len(N) == len(loss):
        raise ValueError(f"budgets, N and loss must have one value per run, got {len(budgets)}, {len(N)}, {len(loss)}")
    levels = np.unique(budgets)
    if len(levels) < 2:
        raise ValueError(f"a power law through the optima needs at least two budgets, got {len(levels)}")
    minima = [fit_parabola_minimum(N[budgets == C], loss[budgets == C]) for C in levels]
    N_opt = np.array([m[0] for m in minima])
    a, log_coef = np.polyfit(np.log(levels), np.log(N_opt), 1)
    return IsoFLOPFit(budgets=levels, N_opt=N_opt, D_opt=levels / (6 * N_opt),
                      loss_opt=np.array([m[1] for m in minima]), parabolas=np.array([m[2] for m in minima]),
                      a=float(a), N_coef=float(np.exp(log_coef)), b=float(1 - a),
                      D_coef=float(np.exp(-log_coef) / 6))
