"""The pool's policy decides alone: restarts after crashes, and whom to evict."""

from __future__ import annotations

from dataclasses import dataclass

from hiagent_host.pool.policy import RestartPolicy, choose_victim, retry_after_s

KEY = ("pkg", "1.0")


def policy() -> RestartPolicy:
    return RestartPolicy(limit=2, window_s=10.0, cooldown_s=30.0)


def test_crashes_up_to_the_limit_within_the_window_do_not_block() -> None:
    p = policy()
    p.record_crash(KEY, 0.0)
    p.record_crash(KEY, 1.0)
    assert p.blocked_for(KEY, 1.0) is None
    assert p.crashes(KEY, 1.0) == 2


def test_one_crash_more_than_the_limit_blocks_for_the_cooldown() -> None:
    p = policy()
    for t in (0.0, 1.0, 2.0):
        p.record_crash(KEY, t)
    assert p.blocked_for(KEY, 2.0) == 30.0
    assert p.blocked_for(KEY, 31.0) == 1.0
    assert p.blocked_for(KEY, 32.0) is None
    assert p.crashes(KEY, 32.0) == 0  # a fresh start after the cooldown


def test_crashes_older_than_the_window_are_forgotten() -> None:
    p = policy()
    for t in (0.0, 1.0, 12.0):
        p.record_crash(KEY, t)
    assert p.blocked_for(KEY, 12.0) is None
    assert p.crashes(KEY, 12.0) == 1


def test_a_reset_lifts_a_block_at_once() -> None:
    p = policy()
    for t in (0.0, 1.0, 2.0):
        p.record_crash(KEY, t)
    p.reset(KEY)
    assert p.blocked_for(KEY, 2.0) is None


def test_packages_are_counted_apart() -> None:
    p = policy()
    for t in (0.0, 1.0, 2.0):
        p.record_crash(KEY, t)
    assert p.blocked_for(("other", "1.0"), 2.0) is None


@dataclass
class Candidate:
    name: str
    evictable: bool
    last_used: float


def test_the_victim_is_the_least_recently_used_evictable_child() -> None:
    children = [
        Candidate("busy-oldest", False, 0.0),
        Candidate("idle-old", True, 1.0),
        Candidate("idle-new", True, 5.0),
    ]
    victim = choose_victim(children)
    assert victim is not None
    assert victim.name == "idle-old"


def test_there_is_no_victim_when_every_child_is_busy() -> None:
    assert choose_victim([Candidate("busy", False, 0.0)]) is None


def test_the_retry_hint_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after_s(0.2) == 1
    assert retry_after_s(10.0) == 10
    assert retry_after_s(2.5) == 3
