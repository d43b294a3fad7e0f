"""The stream's bookkeeping on its own: seq verdicts and local books with checksums."""

from __future__ import annotations

from quantsaas_client.stream.book import OrderBook, crc32_checksum
from quantsaas_client.stream.sequencer import Sequencer, Verdict

CH = "trades.sim.BTC-USD"


def data(seq: int) -> list[dict]:
    return [{"id": str(seq), "price": 100 + seq}]


def test_each_seq_is_delivered_once_and_overlaps_are_dropped():
    seq = Sequencer()
    assert [seq.update(CH, n, data(n))[0] for n in (7, 8, 9)] == [Verdict.DELIVER] * 3
    assert seq.positions() == {CH: 9}
    # A resume that re-sends what we have: same seq, same content.
    assert seq.update(CH, 8, data(8))[0] is Verdict.DUPLICATE
    assert seq.update(CH, 9, data(9))[0] is Verdict.DUPLICATE
    assert seq.update(CH, 10, data(10))[0] is Verdict.DELIVER
    assert seq.duplicates == 2


def test_a_jump_is_a_gap_and_a_restarted_numbering_is_a_reset_not_a_duplicate():
    seq = Sequencer()
    seq.update(CH, 1, data(1))
    assert seq.update(CH, 5, data(5)) == (Verdict.GAP, 2, "gap")
    # The feed process restarted: seq 1 again, with different content.
    assert seq.update(CH, 1, [{"id": "new"}]) == (Verdict.RESET, 6, "reset")
    assert seq.update(CH, 2, [{"id": "new2"}])[0] is Verdict.DELIVER


def test_a_merged_frame_continues_the_channel_and_a_jump_before_it_is_a_gap():
    seq = Sequencer()
    seq.update(CH, 3, data(3))
    # Messages 4..7 in one frame: in order, nothing missing.
    assert seq.update(CH, 7, data(7), from_seq=4) == (Verdict.DELIVER, 4, "")
    assert seq.positions() == {CH: 7}
    # 8 and 9 never came: the merged frame 10..12 reports the gap at its first seq.
    assert seq.update(CH, 12, data(12), from_seq=10) == (Verdict.GAP, 8, "gap")
    # The same merged frame again (a resume overlap) is a duplicate.
    assert seq.update(CH, 12, data(12), from_seq=10)[0] is Verdict.DUPLICATE


def test_lagged_and_snapshots_move_the_baseline_without_a_gap():
    seq = Sequencer()
    seq.update(CH, 1, data(1))
    seq.lagged(CH, 40)
    assert seq.update(CH, 41, data(41))[0] is Verdict.DELIVER
    seq.snapshot(CH, 100)
    assert seq.update(CH, 101, data(101))[0] is Verdict.DELIVER


def test_a_rebase_reports_only_when_asked_with_a_reason():
    seq = Sequencer()
    seq.update(CH, 5, data(5))
    seq.rebase(CH)  # already reported (resume_unavailable): the next message is the base
    assert seq.update(CH, 50, data(50))[0] is Verdict.DELIVER
    seq.rebase(CH, reason="resume_not_supported")
    assert seq.update(CH, 60, data(60)) == (Verdict.GAP, 51, "resume_not_supported")
    seq.rebase(CH, reason="resume_not_supported")
    assert seq.update(CH, 61, data(61))[0] is Verdict.DELIVER  # nothing was lost after all


def test_a_book_keeps_full_state_updates_and_applies_deltas():
    book = OrderBook("book.sim.BTC-USD")
    book.replace({"bids": [[100.0, 1.0], [99.5, 2.0]], "asks": [[100.5, 1.5]], "ts": 1}, seq=1)
    assert book.best_bid == (100.0, 1.0) and book.best_ask == (100.5, 1.5)
    assert book.mid == 100.25 and book.spread == 0.5
    book.apply({"bids": [[100.0, 0], [99.8, 3.0]], "asks": [[101.0, 2.0]], "ts": 2}, seq=2)
    assert book.bids() == [(99.8, 3.0), (99.5, 2.0)]
    assert book.asks() == [(100.5, 1.5), (101.0, 2.0)]
    assert (book.seq, book.ts) == (2, 2)
    copy = book.copy()
    book.apply({"asks": [[100.5, 0]]}, seq=3)
    assert copy.best_ask == (100.5, 1.5) and book.best_ask == (101.0, 2.0)


def test_the_checksum_covers_the_top_levels_as_json_writes_them():
    import zlib

    book = OrderBook()
    book.replace({"bids": [[64000.5, 1.2], [64000, 3]], "asks": [[64001.0, 0.4]]}, seq=1)
    expected = zlib.crc32(b"64000.5:1.2:64000:3:64001.0:0.4")
    assert crc32_checksum(book) == expected
    book.apply({"bids": [[64000, 0]]}, seq=2)
    assert crc32_checksum(book) == zlib.crc32(b"64000.5:1.2:64001.0:0.4")
