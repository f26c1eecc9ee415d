"""The CLI's OpenMP wait policy: PASSIVE by default, set before torch loads, a user's value kept.

libgomp reads OMP_WAIT_POLICY once, when torch is imported; a default set after that import
would silently do nothing, so the checks run in fresh interpreters."""

import os
import subprocess
import sys

PROBE = (
    "import os, sys\n"
    "import irctl.cli\n"
    "print('torch' in sys.modules, repr(os.environ.get('OMP_WAIT_POLICY')))\n"
    "import irctl.cli.app\n"
)


def _probe(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_cli_sets_passive_before_torch_loads():
    assert _probe(None) == "False 'PASSIVE'"


def test_a_users_policy_is_kept():
    assert _probe("ACTIVE") == "False 'ACTIVE'"
    assert _probe("") == "False ''"
