"""The venue's best bid/ask against the book's top: one rule for every caller."""

from __future__ import annotations

from hftkit.book.checks import top_matches


def test_price_and_size_must_both_match() -> None:
    assert top_matches((100, 5), (101, 7), 100, 5, 101, 7)
    assert not top_matches((100, 5), (101, 7), 100, 6, 101, 7)
    assert not top_matches((100, 5), (101, 7), 100, 5, 102, 7)


def test_a_zero_price_stands_for_an_empty_side() -> None:
    assert top_matches(None, (101, 7), 0, 3, 101, 7)
    assert top_matches((100, 5), None, 100, 5, 0, 0)
    assert not top_matches((100, 5), (101, 7), 0, 0, 101, 7)
    assert not top_matches(None, (101, 7), 100, 5, 101, 7)
