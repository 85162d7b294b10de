"""The default method, pinned through the real CLI on the tiny fixture (#27): what it does with a service whose
old adapter already clears its gate, and with one that needs training."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from helpers import RELORA, write_fleet
from relora.core.method.record import RunRecord


def test_the_default_publishes_a_passing_old_adapter_at_zero_steps_and_trains_the_rest_from_it(world,
                                                                                              tmp_path: Path) -> None:
    """The default method, named nowhere in the fleet: a service whose old adapter already clears its gate (a
    wide margin) is published with zero training steps and no search; one whose gate it does not clear at step 0
    (a narrower margin, on the tiny fixture's numbers) trains, from PortLLM's start (alpha 0, beta 1)."""
    from relora.core.method.methods import DEFAULT_METHOD

    path = write_fleet(world, tmp_path, n=2, steps=8)
    fleet = yaml.safe_load(path.read_text())
    del fleet["defaults"]["method"]
    fleet["defaults"]["readapt"] |= {"stop_when_ready": True, "data": {"ready_size": 40, "val_size": 8},
                                     "gate": {"chunk": 8, "allow_underpowered": True}}
    fleet["adapters"][0]["threshold"], fleet["adapters"][1]["threshold"] = "old - 0.5", "old - 0.2"
    path.write_text(yaml.safe_dump(fleet))
    done = subprocess.run([RELORA, "rollout", str(path), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    passing, training = (RunRecord.load(tmp_path / "out" / "runs" / name) for name in ("svc0", "svc1"))
    assert passing.method == training.method == DEFAULT_METHOD
    assert passing.gate.published and passing.steps == 0 and passing.probes == [] and passing.search_s == 0.0
    assert [look.step for look in passing.gate.looks] == [0]
    # steps > 0: with stop_when_ready, a start that cleared its gate at step 0 would have stopped there
    assert (training.alpha, training.beta, training.probes) == (0.0, 1.0, []) and training.steps > 0
