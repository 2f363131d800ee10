"""The divergence guard by hand: spikes against ln V and the running median, and which checkpoint is "good"."""

from __future__ import annotations

import math

import pytest

from minillama.train.guard import NonFiniteGuard, TrainingDiverged


def test_a_spike_is_judged_against_ln_v_first_then_the_median():
    guard = NonFiniteGuard(max_bad_steps=3, spike_factor=2.0, uniform_loss=math.log(256), min_history=3)
    assert guard.why_bad(11.0, 1.0) is None  # 11.0 < 2 x ln 256 = 11.09: no history yet, the uniform bound
    assert "ln(vocabulary)" in guard.why_bad(11.2, 1.0)
    for step, loss in enumerate([5.0, 3.0, 2.0]):
        assert guard.check(step, loss, 1.0)
    assert guard.why_bad(5.9, 1.0) is None  # median 3.0: 5.9 < 6.0
    assert "recent median" in guard.why_bad(6.1, 1.0)
    assert "non-finite" in guard.why_bad(math.nan, 1.0) and "non-finite" in guard.why_bad(1.0, math.inf)
    assert NonFiniteGuard(spike_factor=0.0).why_bad(1e9, 1.0) is None  # off


def test_a_checkpoint_is_good_once_the_next_step_is():
    guard = NonFiniteGuard(max_bad_steps=2, spike_factor=2.0, uniform_loss=5.0)
    guard.check(1, 4.0, 1.0)
    guard.saved("run/checkpoints/step_1")
    assert guard.last_good_checkpoint is None  # not yet: step 2 decides
    guard.check(2, 3.9, 1.0)
    assert guard.last_good_checkpoint == "run/checkpoints/step_1"
    guard.saved("run/checkpoints/step_2")
    assert not guard.check(3, 50.0, 1.0)  # the weights of step_2 gave a spike: step_2 is not good
    guard.saved("run/checkpoints/step_3")  # saved while skipping: never a candidate
    with pytest.raises(TrainingDiverged, match="last good checkpoint is run/checkpoints/step_1;"):
        guard.check(4, 60.0, 1.0)


def test_the_state_names_the_good_checkpoint_by_name(tmp_path):
    (tmp_path / "step_1").mkdir()
    guard = NonFiniteGuard(spike_factor=2.0)
    guard.recent_losses = [3.0, 2.5]
    guard.last_good_checkpoint = "/elsewhere/checkpoints/step_1"
    state = guard.state_dict()
    assert state["last_good"] == "step_1"
    restored = NonFiniteGuard(spike_factor=2.0)
    restored.load_state_dict(state, checkpoints=tmp_path)  # the run folder moved: found in its new place
    assert restored.last_good_checkpoint == str(tmp_path / "step_1") and restored.recent_losses == [3.0, 2.5]
    restored.load_state_dict({"consecutive": 0, "total_skipped": 0})  # a checkpoint from before spikes
    assert restored.last_good_checkpoint is None and restored.recent_losses == []
