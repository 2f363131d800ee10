"""The engine's random number generator: one seedable source for ``randn`` and parameter initialisation.

``manual_seed(0)`` plays the role of ``torch.manual_seed(0)``: after it, building the same model gives the same
weights, which is what makes chapters and tests reproducible.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the engine's generator to ``seed`` and return it."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def get_rng() -> np.random.Generator:
    """The generator used by ``randn`` and by ``nn`` layers when they initialise their weights."""
    return _generator
