"""Commands lift the soft open-files limit: each provider call in flight holds a socket."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

SOFT, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)


@pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD <= 256, reason="the hard limit leaves nothing to lift"
)
def test_the_soft_limit_is_lifted_to_the_hard_one() -> None:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, HARD))

    script = (
        "import resource\n"
        "from antaeus.cli.common import raise_open_files_limit\n"
        "before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "print(before, raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], preexec_fn=lower, capture_output=True, text=True, check=True
    )
    before, answered, after = (int(x) for x in done.stdout.split())
    assert before == 256
    expected = HARD if HARD != resource.RLIM_INFINITY else 1 << 16
    assert answered == after == expected
