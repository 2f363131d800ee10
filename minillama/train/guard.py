"""The divergence guard: skip a step whose loss is non-finite or a spike, abort after too many in a row.

One bad batch (a corrupt document, an overflow in a rare activation) should cost one step, not the run: applying
its gradient could poison every weight at once, so the step is skipped and logged instead. A *spike* is treated the
same way: a finite loss above ``spike_factor`` times a reference, the median of the recent good losses, or before
there are enough of them (and at most) ``ln V``, the loss of a uniform guess over the ``V`` tokens, which no model
that learned anything exceeds. A learning rate far too high gives losses that grow to thousands while staying
finite, from the very first steps. Many bad steps in a row mean the run itself
has diverged (learning rate too high, a broken kernel, failing hardware), and continuing only burns compute, so
the guard stops it and names the checkpoint to go back to, as large runs do by hand (the Llama 3 team restarted
from checkpoints after loss spikes and hardware faults; Grattafiori et al. 2024).

A checkpoint is *good* once the step after it was good: the loss of step ``N + 1`` is computed with the weights
saved at ``step_N``, so a spike there means the damage was already in them.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path


class TrainingDiverged(RuntimeError):
    """Raised after ``max_bad_steps`` consecutive bad (non-finite or spiking) steps."""


@dataclass
class NonFiniteGuard:
    """Counts consecutive bad steps. ``check`` returns True when the step may be applied.

    >>> guard = NonFiniteGuard(max_bad_steps=2)
    >>> guard.check(step=0, loss=2.5, grad_norm=1.0), guard.check(step=1, loss=float("nan"), grad_norm=1.0)
    (True, False)
    """

    max_bad_steps: int = 5
    spike_factor: float = 0.0
    """A finite loss above ``spike_factor`` x the reference loss is a spike (0: off)."""
    uniform_loss: float = math.inf
    """``ln V``: the loss of a uniform guess, the reference before ``min_history`` good steps and its upper bound."""
    window: int = 50
    min_history: int = 10
    consecutive: int = 0
    total_skipped: int = 0
    last_good_checkpoint: str | None = None
    unconfirmed_checkpoint: str | None = None
    recent_losses: list[float] = field(default_factory=list)

    def why_bad(self, loss: float, grad_norm: float) -> str | None:
        """``None`` for a good step, else the reason, for the log."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return f"non-finite loss ({loss}) or gradient norm ({grad_norm})"
        if self.spike_factor:
            enough = len(self.recent_losses) >= self.min_history
            reference = min(statistics.median(self.recent_losses) if enough else math.inf, self.uniform_loss)
            if loss > self.spike_factor * reference:
                what = "the recent median" if reference < self.uniform_loss else "ln(vocabulary), a uniform guess's"
                return f"loss spike ({loss:.4g} > {self.spike_factor:g} x {what} {reference:.4g})"
        return None

    def check(self, step: int, loss: float, grad_norm: float) -> bool:
        """True if the step is good; otherwise count it as skipped (and raise after too many in a row)."""
        reason = self.why_bad(loss, grad_norm)
        if reason is None:
            self.consecutive = 0
            self.recent_losses = (self.recent_losses + [float(loss)])[-self.window:]
            if self.unconfirmed_checkpoint is not None:  # the weights it holds gave a good step
                self.last_good_checkpoint, self.unconfirmed_checkpoint = self.unconfirmed_checkpoint, None
            return True
        self.consecutive += 1
        self.total_skipped += 1
        self.unconfirmed_checkpoint = None  # its weights gave this bad step
        if self.consecutive >= self.max_bad_steps:
            where = (f"the last good checkpoint is {self.last_good_checkpoint}; resume from it with "
                     f"`minillama train --resume {self.last_good_checkpoint}`, e.g. with a lower --lr"
                     if self.last_good_checkpoint else "no good checkpoint was saved before the failure")
            raise TrainingDiverged(f"training diverged: {self.consecutive} consecutive steps (up to step {step}) "
                                   f"were bad, the last with a {reason}; {where}")
        return False

    def saved(self, checkpoint: str) -> None:
        """A checkpoint was written at the current step: good once the next step is (none while skipping)."""
        if self.consecutive == 0:
            self.unconfirmed_checkpoint = checkpoint

    def state_dict(self) -> dict:
        """Counters, recent losses and the name (not the path: run folders move) of the last good checkpoint."""
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped,
                "recent_losses": list(self.recent_losses),
                "last_good": Path(self.last_good_checkpoint).name if self.last_good_checkpoint else None}

    def load_state_dict(self, state: dict, checkpoints: Path | None = None) -> None:
        """Restore :meth:`state_dict`; ``checkpoints`` is the folder the last good checkpoint is looked up in."""
        self.consecutive = int(state["consecutive"])
        self.total_skipped = int(state["total_skipped"])
        self.recent_losses = [float(x) for x in state.get("recent_losses", [])]
        name = state.get("last_good")
        found = Path(checkpoints) / name if name and checkpoints is not None else None
        self.last_good_checkpoint = str(found) if found is not None and found.is_dir() else None
        self.unconfirmed_checkpoint = None
