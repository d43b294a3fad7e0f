"""Per-channel ``seq`` bookkeeping: what to deliver, drop, or report as lost.

The server numbers a channel's messages 1, 2, 3... once, in the feed process,
so every server and every reconnect carries the same numbers. Here: each
``seq`` reaches the consumer once (a resume may overlap what we already had),
jumps are reported, and a restart of the numbering (the feed process
restarted) is told apart from a duplicate by content: a duplicate carries
the same data as the message we delivered under that ``seq``.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


class Verdict(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"  # deliver, after reporting the missing range
    RESET = "reset"  # deliver, after reporting that the numbering restarted


@dataclass
class _Channel:
    last: int | None = None
    recent: OrderedDict[int, Any] = field(default_factory=OrderedDict)
    # None: no rebase pending. "": the next message starts a new baseline silently
    # (the loss was already reported). Else the reason to report if the next message
    # is not the one expected (e.g. the server could not resume).
    rebase: str | None = None


class Sequencer:
    """Tracks the last ``seq`` per channel.

    ``window`` is how many recent messages per channel are remembered to tell a
    re-sent message from a restarted numbering; resume overlaps are short.
    """

    def __init__(self, *, window: int = 256) -> None:
        self.window = window
        self._channels: dict[str, _Channel] = {}
        self.duplicates = 0

    def _state(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(recent=OrderedDict())
        return state

    def last_seq(self, channel: str) -> int | None:
        state = self._channels.get(channel)
        return None if state is None else state.last

    def positions(self) -> dict[str, int]:
        """``{channel: last seq}`` for the channels that have one: what ``resume`` sends."""
        return {c: s.last for c, s in self._channels.items() if s.last is not None}

    def forget(self, channel: str) -> None:
        self._channels.pop(channel, None)

    def rebase(self, channel: str, *, reason: str | None = None) -> None:
        """The next message of ``channel`` starts a new baseline. With a ``reason``,
        a message other than ``last + 1`` is reported as a ``Gap`` of that reason."""
        self._state(channel).rebase = reason or ""

    def snapshot(self, channel: str, seq: int) -> None:
        """A snapshot is the whole state as of ``seq``: continue from there."""
        state = self._state(channel)
        state.last = seq
        state.rebase = None
        state.recent.clear()

    def lagged(self, channel: str, to_seq: int) -> None:
        """The server told us it skipped up to ``to_seq``: nothing to report again."""
        state = self._state(channel)
        if state.last is None or to_seq > state.last:
            state.last = to_seq

    def update(
        self, channel: str, seq: int, data: Any, *, from_seq: int | None = None
    ) -> tuple[Verdict, int | None, str]:
        """The verdict for an update, the seq that was expected, and the gap's reason.

        ``from_seq``: the first seq of a merged frame (messages ``from_seq``..``seq``);
        such a frame continues the channel when ``from_seq`` is the one expected.
        """
        first = seq if from_seq is None or from_seq > seq else from_seq
        state = self._state(channel)
        last = state.last
        if last is None:
            self._accept(state, seq, data)
            return Verdict.DELIVER, None, ""
        expected = last + 1
        if first == expected or first < expected <= seq:
            # In order; a merged frame reaching back over what we had (a resume racing
            # a merge) still carries every message after `last`.
            self._accept(state, seq, data)
            return Verdict.DELIVER, expected, ""
        if seq <= last and self._seen(state, seq, data):
            self.duplicates += 1
            return Verdict.DUPLICATE, expected, ""
        pending = state.rebase
        self._accept(state, seq, data, reset=seq <= last)
        if pending == "":
            return Verdict.DELIVER, expected, ""
        if seq <= last:
            return Verdict.RESET, expected, pending or "reset"
        return Verdict.GAP, expected, pending or "gap"

    @staticmethod
    def _seen(state: _Channel, seq: int, data: Any) -> bool:
        return seq in state.recent and state.recent[seq] == data

    def _accept(self, state: _Channel, seq: int, data: Any, *, reset: bool = False) -> None:
        if reset:
            state.recent.clear()
        state.last = seq
        state.rebase = None
        state.recent[seq] = data
        if len(state.recent) > self.window:
            state.recent.popitem(last=False)
