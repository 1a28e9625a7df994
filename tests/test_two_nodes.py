"""Two nodes, for real: the platform on a multi-node Ray on this machine (Ray's own
`ray.cluster_utils.Cluster`, loopback), session actors on the session nodes only. The driver
(benchmarks/two_nodes.py) runs as a process of its own, so its cluster is not the session
platform fixture's; it checks each step and exits 1 on the first that fails:

1. the node holding a signed-in call's session actor is removed; the next turn is answered
   signed in (`turn.metrics.restored`), by an actor restored on the other session node;
2. `voice-agent session say` and `session close`, each a separate driver, reach the call;
3. a PIN lockout made on a call whose actor was on one node (then removed) refuses the
   caller's next call on another node; `voice-agent customers unlock` finds it in the store.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.platform

ROOT = Path(__file__).resolve().parent.parent


def test_calls_outlive_their_node_are_steered_from_another_driver_and_a_lockout_holds_across_nodes(tmp_path):
    figures = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICE_", "RAY_ADDRESS"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "two_nodes.py"), "--json", str(figures)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    print(done.stdout)
    got = json.loads(figures.read_text())
    assert got["removed_to_next_turn_answered_s"] < 15, got  # the turn is not lost waiting for a new actor
    assert got["removed_to_actor_restored_s"] < 35, got  # within one revive's placement window (30 s)
    assert got["session_say_heard_s"] < 60 and got["session_close_ended_s"] < 60, got
    assert len(set(got["lockout_nodes"])) == 2, got
