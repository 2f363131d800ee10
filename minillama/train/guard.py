"""The non-finite guard: skip a step whose loss or gradient norm is NaN/inf, abort after too many in a row.

One bad batch (a corrupt document, an overflow in a rare activation) should cost one step, not the run: applying
a NaN gradient would poison every weight at once, so the step is skipped and logged instead. Many bad steps in a
row mean the run itself has diverged (learning rate too high, a broken kernel, failing hardware), and continuing
only burns compute, so the guard stops it and names the checkpoint to go back to, as large runs do by hand
(the Llama 3 team restarted from checkpoints after loss spikes and hardware faults; Grattafiori et al. 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class TrainingDiverged(RuntimeError):
    """Raised after ``max_bad_steps`` consecutive non-finite steps."""


@dataclass
class NonFiniteGuard:
    """Counts consecutive bad steps. ``check`` returns True when the step may be applied.

    >>> guard = NonFiniteGuard(max_bad_steps=2)
    >>> guard.check(step=0, loss=2.5, grad_norm=1.0), guard.check(step=1, loss=float("nan"), grad_norm=1.0)
    (True, False)
    """

    max_bad_steps: int = 5
    consecutive: int = 0
    total_skipped: int = 0
    last_good_checkpoint: str | None = None

    def check(self, step: int, loss: float, grad_norm: float) -> bool:
        """True if ``loss`` and ``grad_norm`` are finite; otherwise count the step as skipped (and maybe abort)."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total_skipped += 1
        if self.consecutive >= self.max_bad_steps:
            where = (f"the last good checkpoint is {self.last_good_checkpoint}; resume from it with "
                     f"`minillama train --resume {self.last_good_checkpoint}`, e.g. with a lower --lr"
                     if self.last_good_checkpoint else "no checkpoint was saved before the failure")
            raise TrainingDiverged(
                f"training diverged: {self.consecutive} consecutive steps (up to step {step}) had a non-finite loss "
                f"({loss}) or gradient norm ({grad_norm}); {where}"
            )
        return False

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive = int(state["consecutive"])
        self.total_skipped = int(state["total_skipped"])
