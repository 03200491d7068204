"""What a kept answer may rest on: git's racy rule for mtimes, and the environment variables
that tell two identical commands apart."""

from __future__ import annotations

import time

from torchenv.agent.cli import fastpath, stamps

SECOND = 1_000_000_000


def test_an_mtime_the_clock_may_yet_repeat_is_racy_and_an_older_or_far_future_one_is_not() -> None:
    now = time.time_ns()
    assert stamps.racy([("torch", now - SECOND // 2, 1)], [])
    assert stamps.racy([], [("torch/__init__.py", 10, now, 2)])
    assert not stamps.racy([("torch", now - 10 * SECOND, 1)], [])
    # a clock stepped back an hour since: a write now would set another mtime, which is seen
    assert not stamps.racy([("torch", now + 3600 * SECOND, 1)], [])


def test_the_container_host_name_does_not_tell_commands_apart_but_other_variables_do() -> None:
    base = {"PATH": "/usr/bin", "TORCHENV_INDEX_URL": "http://mirror/simple"}
    digest = fastpath.env_digest({**base, "HOSTNAME": "pod-a1"})
    assert fastpath.env_digest({**base, "HOSTNAME": "pod-b2"}) == digest
    assert fastpath.env_digest({**base, "TORCHENV_INDEX_URL": "http://other/simple"}) != digest
