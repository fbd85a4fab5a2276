"""Client order ids: our strings <-> Thalex's uint64 ``client_order_id`` (no I/O)."""

from __future__ import annotations

from collections import OrderedDict


class ClientOrderIds:
    """Our string client order ids <-> Thalex's uint64 ``client_order_id``.

    Numbers only grow, starting from a clock-derived value, so ids of orders left by an earlier
    process never collide with new ones. Retired ids stay resolvable for a while (a trade-history
    push can arrive after the order closed), then the oldest are forgotten.
    """

    _UINT64 = 1 << 64

    def __init__(self, start: int, retired_memory: int = 4096) -> None:  # late pushes come within seconds
        if not 0 < start < self._UINT64:
            raise ValueError("start must be a positive uint64")
        self._next = start
        self.by_wire: dict[int, str] = {}
        self._by_ours: dict[str, tuple[int, int]] = {}  # ours -> (wire id, connection epoch)
        self._retired: OrderedDict[str, None] = OrderedDict()
        self._retired_memory = retired_memory

    def assign(self, ours: str, epoch: int) -> int:
        if ours in self._by_ours and ours not in self._retired:
            raise ValueError(f"client order id {ours!r} is already live")
        self._forget(ours)
        wire = self._next
        self._next = (self._next + 1) % self._UINT64 or 1
        self.by_wire[wire] = ours
        self._by_ours[ours] = (wire, epoch)
        return wire

    def wire(self, ours: str) -> tuple[int, int] | None:
        """(wire id, epoch of the connection that assigned it), or None."""
        return self._by_ours.get(ours)

    def ours(self, wire: int) -> str | None:
        return self.by_wire.get(wire)

    def release(self, ours: str) -> None:
        """The order never existed (definitive reject): forget it at once."""
        self._forget(ours)

    def retire(self, ours: str) -> None:
        """The order is closed: keep the mapping for late pushes, bounded."""
        if ours not in self._by_ours or ours in self._retired:
            return
        self._retired[ours] = None
        while len(self._retired) > self._retired_memory:
            oldest, _ = self._retired.popitem(last=False)
            self._forget(oldest)

    def _forget(self, ours: str) -> None:
        entry = self._by_ours.pop(ours, None)
        if entry is not None:
            self.by_wire.pop(entry[0], None)
        self._retired.pop(ours, None)

    def __len__(self) -> int:
        return len(self._by_ours)
