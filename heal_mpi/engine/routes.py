"""The one way rows and their headers travel between ranks: `Header` (named columns) and `route`.

Every communicating step of the engine sends, to each rank, a block of messages: a header
(one row of named float64 columns per message: destination, sender, weight, ...) and, for
steps that carry models, one model row per message. `route` sends, in one collective step,
the headers (whose handshake tells every size), then the rows from where they lie in host
memory (device rows are staged there), and hands back per source rank the header with its
columns by name and the rows on the device. The block a rank sends itself never leaves the
device. A Mix calls the two halves apart: `route_heads` once, then `route_rows` once per piece
of its receivers (`Pieces`), so that a rank never holds all the rows of a Gossip round in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from heal_mpi.comm import Comm

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}

# What a message of a Mix carries (its header's column "carry"): a float64 row (a partial sum),
# a float32 row as it is (its receiver weights it), or no row (its receiver drops rows: Mix.keep).
WIDE, NARROW, NO_ROW = 0, 1, 2


class Header:
    """Named float64 columns of a block of messages, one row per message (ids are exact below 2**53).

    Args:
        columns: name -> array [m] (one column) or [m, k] (k columns, e.g. per-edge values).
    """

    def __init__(self, **columns: np.ndarray):
        m = len(next(iter(columns.values())))
        # (name, None) is one column; (name, k) a block of k columns, read back as [m, k] even when k is 0 or 1
        self.layout = tuple((name, None if np.ndim(c) == 1 else np.shape(c)[1]) for name, c in columns.items())
        self.data = np.empty((m, self.width))
        at = 0
        for (name, k), c in zip(self.layout, columns.values()):
            w = 1 if k is None else k
            self.data[:, at:at + w] = np.asarray(c, dtype=np.float64).reshape(m, w)
            at += w

    @classmethod
    def of(cls, layout: tuple, data: np.ndarray) -> "Header":
        head = cls.__new__(cls)
        head.layout, head.data = layout, data
        return head

    @property
    def width(self) -> int:
        return sum(1 if k is None else k for _, k in self.layout)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, name: str) -> np.ndarray:
        """The column `name`: float64 [m], or [m, k] for a k-wide one."""
        at = 0
        for col, k in self.layout:
            if col == name:
                return self.data[:, at] if k is None else self.data[:, at:at + k]
            at += 1 if k is None else k
        raise KeyError(name)

    def ids(self, name: str) -> np.ndarray:
        """A column of node ids or counts, as int64."""
        return self[name].astype(np.int64)

    def take(self, index) -> "Header":
        return Header.of(self.layout, self.data[index])


@dataclass
class Block:
    """The messages of one step from one rank to another: their header, and their model rows
    ([m, P] on the device, float32 or float64) when the step carries models. A Mix's blocks
    have a header column "carry": `rows` holds one row per header row that says WIDE, `lone`
    one float32 row per header row that says NARROW, in header order."""

    head: Header
    rows: torch.Tensor | None = None
    lone: torch.Tensor | None = None

    @classmethod
    def carrying(cls, head: Header, rows: torch.Tensor) -> "Block":
        """Messages that each carry one row as it is (those whose "carry" is not NO_ROW): float32
        rows travel as `lone` ones (the header says NARROW), float64 ones as `rows` (WIDE)."""
        narrow = rows.dtype == torch.float32
        return cls(head, rows[:0].double() if narrow else rows, rows if narrow else rows[:0].float())

    def widened(self) -> torch.Tensor:
        """float64 [k, P]: the rows of a block made by `carrying`, in header order."""
        return self.lone.double() if len(self.lone) else self.rows


def route(comm: Comm, step: str, outgoing: list[Block]) -> tuple[list[Block], int]:
    """Send outgoing[r] to rank r; return (what every rank sent here, in rank order, and the bytes
    of model rows staged between the device and the host).

    Collective: every rank must call in the same `step`, with the same header layout and row
    width and dtype (the block a rank sends itself fixes them, even when empty).
    """
    return route_rows(comm, step, outgoing, route_heads(comm, step, [block.head for block in outgoing]))


def route_heads(comm: Comm, step: str, heads: list[Header]) -> list[Header]:
    """Send heads[r] to rank r; return what every rank sent here, in rank order (collective, as `route`)."""
    rank = comm.world.rank
    layout, width = heads[rank].layout, heads[rank].width
    incoming = comm.exchange([np.zeros((0, width)) if r == rank else
                              np.ascontiguousarray(h.data, dtype=np.float64).reshape(len(h), width)
                              for r, h in enumerate(heads)], step)
    return [heads[rank] if r == rank else Header.of(layout, h) for r, h in enumerate(incoming)]


def route_rows(comm: Comm, step: str, outgoing: list[Block], heads: list[Header]) -> tuple[list[Block], int]:
    """`route` of blocks whose headers have already travelled: heads[r] is what rank r sent here
    (its column "carry" tells how many rows follow), outgoing[r].head what this rank sent to r.
    A Mix sends its headers at once and its rows in pieces of receivers (engine.core)."""
    rank, own = comm.world.rank, outgoing[comm.world.rank]
    has_rows = own.rows is not None
    p = own.rows.shape[1] if has_rows else 0
    dtype = _NUMPY[own.rows.dtype] if has_rows else np.float64
    has_lone = own.lone is not None
    staged = 0
    rows_out, lone_out = [], []

    def host(rows: torch.Tensor, dtype) -> np.ndarray:  # a view of host rows, a copy of device ones
        nonlocal staged
        out = np.ascontiguousarray(rows.detach().cpu().numpy(), dtype=dtype)
        staged += out.nbytes
        return out

    for r, block in enumerate(outgoing if has_rows else []):
        if r == rank:
            rows_out.append(np.zeros((0, p), dtype=dtype))
            lone_out.append(np.zeros((0, p), dtype=np.float32))
        else:  # rows are never packed beside their header: each payload is sent from where it lies
            rows_out.append(host(block.rows, dtype))
            lone_out.append(host(block.lone, np.float32) if has_lone else None)
    carry = [h["carry"] if has_lone else np.full(len(h), WIDE) for h in heads]
    incoming_rows = comm.exchange(rows_out, step, expect=[int((c == WIDE).sum()) * p for c in carry]) \
        if has_rows else [None] * len(heads)
    incoming_lone = comm.exchange(lone_out, step, expect=[int((c == NARROW).sum()) * p for c in carry]) if has_lone \
        else [None] * len(heads)
    out = []
    for r, (head, rows, lone) in enumerate(zip(heads, incoming_rows, incoming_lone)):
        if r == rank:
            out.append(own)
            continue
        device = own.rows.device if has_rows else None
        staged += sum(a.nbytes for a in (rows, lone) if a is not None)
        out.append(Block(head, None if rows is None else torch.as_tensor(rows, device=device),
                         None if lone is None else torch.as_tensor(lone, device=device)))
    return out, staged


# Bound on the rows of a Mix in flight at once (sent and received by a rank, at 8 bytes a number):
# a Gossip round sends most of its rows to other ranks, 1 GB of a rank's 10,000 MLP nodes. A piece's
# transients (partial sums, rows sent and received) are freed into glibc's heap, which keeps them:
# 10,000 Gossip MLP nodes on 2 ranks held 1.90-2.05 GiB at 128 MiB pieces, 1.86-1.87 GiB at 64 MiB,
# in Mixes as fast (1.0-1.3 s); at 32 and 16 MiB the Mix took 1.2-1.5 s.
PIECE_BYTES = 64 << 20


class Pieces:
    """The receivers of a Mix cut into pieces whose rows travel one piece after the other, so that
    a rank holds one piece's rows in flight, not every one. Every rank computes the same cut from
    the receivers that keep rows (Mix.keep): piece k holds, on each rank, the k-th of `count`
    equal runs of its keeping nodes, so that a receiver's rows from every rank arrive in one piece
    and are added in rank order, as in one route."""

    def __init__(self, keeps: np.ndarray, bounds: np.ndarray, row_bytes: int):
        kept = np.r_[0, np.cumsum(keeps)]
        per_rank = np.diff(kept[bounds])
        self.count = max(1, -(-int(per_rank.max(initial=0)) * row_bytes // PIECE_BYTES))
        self.of = np.zeros(len(keeps), dtype=np.int64)
        if self.count > 1:
            owner = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
            before = kept[:-1] - kept[bounds[owner]]  # keeping nodes before each node on its rank
            self.of = np.minimum(before * self.count // np.maximum(per_rank[owner], 1), self.count - 1)

    def cuts(self, ids: np.ndarray) -> np.ndarray:
        """int [count + 1]: where each piece starts in `ids`, sorted global ids of one rank's nodes."""
        return np.searchsorted(self.of[ids], np.arange(self.count + 1))
