"""The stream cursor: late commits fill holes, the safe cursor never skips one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.policy.stream_cursor import HOLE_TIMEOUT_S, StreamCursor


def test_in_order_numbers_move_the_safe_cursor() -> None:
    cursor = StreamCursor(10)
    assert cursor.accept([11, 12], now=0.0) == [11, 12]
    assert cursor.safe == 12 and cursor.open_holes() == []


def test_a_skipped_number_is_a_hole_until_it_commits() -> None:
    cursor = StreamCursor(10)
    assert cursor.accept([11, 13], now=0.0) == [11, 13]
    assert cursor.open_holes() == [12]
    assert cursor.safe == 11  # resuming from 11 gets 12 when it commits
    assert cursor.accept([12], now=1.0) == [12]
    assert cursor.safe == 13


def test_a_hole_that_never_fills_is_given_up() -> None:
    cursor = StreamCursor(0)
    cursor.accept([2], now=0.0)
    cursor.expire(now=HOLE_TIMEOUT_S - 0.1)
    assert cursor.safe == 0
    cursor.expire(now=HOLE_TIMEOUT_S)
    assert cursor.safe == 2


def test_nothing_is_delivered_twice() -> None:
    cursor = StreamCursor(0)
    cursor.accept([1, 3], now=0.0)
    assert cursor.accept([1, 3, 2], now=0.5) == [2]
    assert cursor.accept([3], now=0.6) == []


@given(
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=60, unique=True),
    st.data(),
)
def test_every_number_is_delivered_once_whatever_the_commit_order(
    numbers: list[int], data: st.DataObject
) -> None:
    """Numbers committed in any order, read in any batches: each is delivered once, and the
    safe cursor is never past a number not yet delivered (so a resume misses nothing)."""
    order = data.draw(st.permutations(numbers))
    cursor = StreamCursor(0, hole_timeout_s=1e9)
    delivered: list[int] = []
    committed: set[int] = set()
    index = 0
    while index < len(order):
        size = data.draw(st.integers(min_value=1, max_value=5))
        batch = order[index : index + size]
        index += size
        committed.update(batch)
        # a read sees every committed number above the cursor, or in a hole
        visible = [n for n in committed if n > cursor.delivered or n in cursor.holes]
        delivered += cursor.accept(visible, now=0.0)
        missing = [n for n in numbers if n not in delivered]
        assert all(cursor.safe < n for n in missing)
    assert sorted(delivered) == sorted(numbers)
