"""How the rows that a Mix's edges carry are gathered and summed, within a rank and across ranks.

`Sources` says which row each edge carries (the sender's, or a forgery), `weighted_sum` sums rows
by group in bounded chunks; `partials` is what a rank sends towards another rank's receivers and
`add_partials` adds it there, `OwnEdges` a rank's edges to its own receivers. They add into a
`Held`: a float64 sum per receiver, or the float32 row of a receiver that one row reaches;
`SumBuffers` keeps that memory from round to round.
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.engine.routes import NARROW, NO_ROW, WIDE

# Bound on the float64 [groups, P] partial sums of one reduction chunk. Below glibc's 32 MiB mmap
# ceiling, so a freed chunk is reused, not faulted in afresh: at 64 MiB, page faults cost a
# 10,000-node Gossip round 2.5 s.
CHUNK_BYTES = 16 << 20

# Bound on the float64 rows that pass through several torch ops in turn (a weighted sum's gathered,
# widened, weighted rows; the sums, own rows and quotients of an Assign's or a result's means): at
# 4 MiB they stay in the cache from one op to the next. 10,000 MLP nodes, 2 ranks: HEAL's up-mix
# 0.16-0.46 s at 16 MiB, 0.12-0.16 s at 4 MiB, 0.17-0.24 s at 1 MiB; Gossip's Assign 0.64-0.71 s at
# 16 MiB, 0.31-0.41 s at 4 MiB.
PASS_BYTES = 4 << 20


def pass_rows(p: int, itemsize: int = 8) -> int:
    """Rows of p numbers of `itemsize` bytes that one pass takes (PASS_BYTES, at least one row)."""
    return max(1, PASS_BYTES // (itemsize * max(p, 1)))


_SCRATCH: dict[tuple, torch.Tensor] = {}


def scratch(name: str, shape: tuple, dtype, device) -> torch.Tensor:
    """An uninitialised [shape] tensor in memory kept under `name`, valid until the next call with
    that name: the buffers of one pass (a weighted sum's, an Assign's), which a Gossip round takes
    thousands of times in slightly different sizes. Allocated afresh each time, they left glibc's
    heap growing by fragments it could not reuse (10,000 MLP nodes, 2 ranks: 290 MiB of free heap
    kept at the end of a round, 190 MiB with these reused)."""
    key = (name, dtype, torch.device(device))
    return reused(_SCRATCH, key, int(np.prod(shape)), dtype, device).view(shape)


def reused(memory: dict, key, need: int, dtype, device) -> torch.Tensor:
    """`need` numbers of memory[key], made anew only where it is too small or over twice too large
    (a large first round must not be kept), with room for the few per cent that sizes vary by."""
    buf = memory.get(key)
    if buf is None or buf.numel() < need or buf.numel() > 2 * need + (CHUNK_BYTES >> 3):
        memory.pop(key, None)
        buf = memory[key] = torch.empty(need + need // 8, dtype=dtype, device=device)
    return buf[:need]


class Sources:
    """The row each edge of a Mix carries: the sender's honest row (table[index]), except on
    the edges whose sender the channel says forges (`lying`), which carry `forged[forged_index]`,
    and the edges appended by `extended`, which carry rows sent in an earlier round.
    A node's edge to itself is never a message, so it is never forged."""

    def __init__(self, table: torch.Tensor, index: np.ndarray, forged=None, lying=None, forged_index=None):
        self.table, self.index, self.forged = table, index, forged
        self.lying = np.zeros(len(index), dtype=bool) if lying is None else lying
        self.forged_index = forged_index

    @classmethod
    def through(cls, channel, purpose: str, table: torch.Tensor, index: np.ndarray, src: np.ndarray,
                dst: np.ndarray, rnd: int) -> "Sources":
        """The rows table[index] sent from `src` to `dst` (global ids) through the channel, which
        forges on the edges of forging senders (only those rows are copied and altered)."""
        if not channel.alterations:
            return cls(table, index)
        lying = channel.forging(purpose, src) & (src != dst)
        if not lying.any():
            return cls(table, index)
        senders, first, forged_at = np.unique(src[lying], return_index=True, return_inverse=True)
        honest = table[torch.as_tensor(index[lying][first], device=table.device)]
        forged_index = np.full(len(index), -1, dtype=np.int64)
        forged_index[lying] = forged_at
        return cls(table, index, channel.alter(purpose, senders, honest, rnd), lying, forged_index)

    def extended(self, rows: torch.Tensor | None) -> "Sources":
        """These edges, then one edge per row of `rows` that carries it (rows that were in flight)."""
        if rows is None or len(rows) == 0:
            return self
        n, m = len(self.index), len(rows)
        first = 0 if self.forged is None else len(self.forged)
        other = rows if self.forged is None else torch.cat([self.forged, rows.to(self.forged.dtype)])
        at = np.full(n, -1, dtype=np.int64) if self.forged_index is None else self.forged_index
        return Sources(self.table, np.r_[self.index, np.zeros(m, dtype=np.int64)], other,
                       np.r_[self.lying, np.ones(m, dtype=bool)], np.r_[at, first + np.arange(m)])

    @property
    def narrow(self) -> bool:
        """Whether every row is float32 (a forgery of another dtype could not cross as float32 unchanged)."""
        return self.table.dtype == torch.float32 and (self.forged is None or self.forged.dtype == torch.float32)

    def gather(self, edges: np.ndarray, dtype=torch.float64) -> torch.Tensor:
        """[len(edges), P] of `dtype`: the rows the edges carry."""
        dev = self.table.device
        out = self.table[torch.as_tensor(self.index[edges], device=dev)].to(dtype)
        lying = self.lying[edges]
        if lying.any():
            out[torch.as_tensor(np.flatnonzero(lying), device=dev)] = \
                self.forged[torch.as_tensor(self.forged_index[edges[lying]], device=dev)].to(dtype)
        return out

    def subset(self, edges: np.ndarray) -> "Sources":
        """The sources of these edges only, in this order."""
        return Sources(self.table, self.index[edges], self.forged, self.lying[edges],
                       None if self.forged_index is None else self.forged_index[edges])

    def reduce(self, group: np.ndarray, w: np.ndarray, n_out: int) -> torch.Tensor:
        """float64 [n_out, P]: sum of w * row per group, each group's rows added in edge order."""
        honest = ~self.lying
        part = weighted_sum(self.table, self.index[honest], group[honest], w[honest], n_out)
        if self.lying.any():
            part += weighted_sum(self.forged, self.forged_index[self.lying], group[self.lying], w[self.lying], n_out)
        return part

    def add_each(self, sums: torch.Tensor, at: np.ndarray, w: np.ndarray) -> None:
        """sums[at[e]] += w[e] * the row edge e carries, each `at` once: what adding a partial of
        one edge gives (s + (0 + v) is s + v, a sum never being -0.0), without forming it."""
        for table, index, edges in ((self.table, self.index, ~self.lying),
                                    (self.forged, self.forged_index, self.lying)):
            if edges.any():
                weighted_sum(table, index[edges], at[edges], w[edges], len(sums), into=sums)


def is_run(ix: np.ndarray) -> bool:
    """Whether ix holds consecutive rows k, k + 1, ..., k + len - 1 (not empty): a slice, no gather."""
    return len(ix) > 0 and ix[-1] - ix[0] == len(ix) - 1 and bool((np.diff(ix) > 0).all())


def weighted_sum(table: torch.Tensor, index: np.ndarray, group: np.ndarray, w: np.ndarray | None,
                 n_out: int, dtype=torch.float64, into: torch.Tensor | None = None) -> torch.Tensor:
    """[n_out, P] of `dtype`: sum of w * table[index] per group, in chunks of edges (so no
    [edges, P] temporary larger than PASS_BYTES exists), added into `into` (its rows `group`,
    its dtype) when given. The chunk buffers are reused: fresh ones cost more in page faults
    than the sums themselves."""
    p, dev = table.shape[1], table.device
    out = torch.zeros((n_out, p), dtype=dtype, device=dev) if into is None else into
    dtype = out.dtype
    chunk = pass_rows(p)
    gathered = scratch("gathered", (min(chunk, len(index)), p), table.dtype, dev)
    wide = gathered if table.dtype == dtype else scratch("widened", gathered.shape, dtype, dev)
    for a in range(0, len(index), chunk):
        m, ix, rows = min(chunk, len(index) - a), index[a:a + chunk], wide[:min(chunk, len(index) - a)]
        if is_run(ix):  # a run of the table's rows: read in place
            rows.copy_(table[int(ix[0]):int(ix[0]) + m])
        else:
            torch.index_select(table, 0, torch.as_tensor(ix, device=dev), out=gathered[:m])
            if rows is not gathered:
                rows.copy_(gathered[:m])
        if w is not None and (w[a:a + chunk] != 1).any():  # a weight of 1 leaves the rows as they are
            rows.mul_(torch.as_tensor(w[a:a + chunk], dtype=dtype, device=dev)[:, None])
        out.index_add_(0, torch.as_tensor(group[a:a + chunk], device=dev), rows)
    return out


def add_by_chunks(sums: torch.Tensor, at: np.ndarray, sources: Sources, group: np.ndarray, w: np.ndarray) -> None:
    """sums[at[g]] += the sum of w * row over group g's edges, a bounded chunk of groups at a time:
    each group's rows are added in edge order, as one whole partial [groups, P] would add them, so
    the result is the same bit for bit without holding that partial. A group of one edge adds its
    weighted row straight into the sums (Sources.add_each)."""
    count = np.bincount(group, minlength=len(at))
    one = np.flatnonzero(count[group] == 1)
    sources.subset(one).add_each(sums, at[group[one]], w[one])
    several = np.flatnonzero(count > 1)  # the groups of several edges, renumbered 0, 1, ...
    renumbered = np.cumsum(count > 1) - 1
    edges = np.flatnonzero(count[group] > 1)
    of = renumbered[group[edges]]
    chunk = max(1, CHUNK_BYTES // (8 * max(sums.shape[1], 1)))
    for g0 in range(0, len(several), chunk):
        # in edge order: rows that follow each other are read in place (HEAL's clients of a rank)
        sel = slice(None) if len(several) <= chunk else (of >= g0) & (of < g0 + chunk)
        e = edges[sel]
        part = sources.subset(e).reduce(of[sel] - g0, w[e], min(chunk, len(several) - g0))
        sums.index_add_(0, torch.as_tensor(at[several[g0:g0 + len(part)]], device=sums.device), part)


class Held:
    """Where a Mix forms its receivers' sums on this rank: a float64 sum [P] per receiver (`wide`),
    except that a receiver reached by a single float32 row keeps that row (`lone`, half the bytes;
    its edge's weight is applied when read). In a Gossip round most receivers get one row.

    Attributes:
        wide: float64 [m, P]; lone: float32 [k, P].
        place: int64 [n_local]: local row i's sum is wide[place[i]], or its row lone[-1 - place[i]]
            (meaningless for nodes that receive nothing).
        nodes: int64, the local rows that received, sorted.
    """

    def __init__(self, wide: torch.Tensor, lone: torch.Tensor, place: np.ndarray, nodes: np.ndarray):
        self.wide, self.lone, self.place, self.nodes = wide, lone, place, nodes

    @classmethod
    def of(cls, sums: torch.Tensor, nodes: np.ndarray, n_local: int) -> "Held":
        """Sums [len(nodes), P] of these local rows, every one wide."""
        place = np.zeros(n_local, dtype=np.int64)
        place[nodes] = np.arange(len(nodes))
        return cls(sums, sums[:0].float(), place, nodes)

    def lone_of(self, local: np.ndarray) -> np.ndarray:
        """bool [len(local)]: which of these receivers keep a lone row."""
        return self.place[local] < 0

    def put(self, at: np.ndarray, rows: torch.Tensor) -> None:
        """The single rows of the lone receivers at `at` (places < 0)."""
        self.lone.index_copy_(0, torch.as_tensor(-1 - at, device=self.lone.device), rows)

    def sums_of(self, local: np.ndarray, weights: np.ndarray, out: torch.Tensor | None = None,
                read_only: bool = False) -> torch.Tensor:
        """float64 [len(local), P]: the sums of these local rows (a copy, into `out` when given;
        `read_only`: a view where they are a run of wide sums, which the caller must not write)."""
        at, dev = self.place[local], self.wide.device
        if (at >= 0).all():
            if read_only and is_run(at):
                return self.wide[int(at[0]):int(at[0]) + len(at)]
            return torch.index_select(self.wide, 0, torch.as_tensor(at, device=dev), out=out)
        out = torch.empty((len(at), self.wide.shape[1]), dtype=torch.float64, device=dev) if out is None else out
        wide, lone = np.flatnonzero(at >= 0), np.flatnonzero(at < 0)
        if len(wide) == 0:  # lone rows only (an Assign takes them apart from the wide sums): no scatter
            return self._lone_sums(-1 - at, weights[local], out)
        out[torch.as_tensor(wide, device=dev)] = self.wide[torch.as_tensor(at[wide], device=dev)]
        out[torch.as_tensor(lone, device=dev)] = self._lone_sums(-1 - at[lone], weights[local[lone]])
        return out

    def _lone_sums(self, k: np.ndarray, w: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """float64 [len(k), P]: 0 + w * lone[k], exactly what adding each row into a zero sum gave
        (never -0.0)."""
        dev = self.lone.device
        rows = self.lone[int(k[0]):int(k[0]) + len(k)] if is_run(k) else self.lone[torch.as_tensor(k, device=dev)]
        return torch.mul(rows, torch.as_tensor(w, dtype=torch.float64, device=dev)[:, None], out=out).add_(0.0)


class OwnEdges:
    """This rank's edges (edge e reaching the Mix's destination inverse[e]) to its own receivers
    `mine` (a slice of the destinations, from `first`, the first of this rank's), to be added into
    the receivers' sums at this rank's place in the rank order. When their float64 sums fit one
    chunk (HEAL's and FedAvg's few hubs) they are formed at once, before the route, while the other
    ranks form their partials; otherwise (Gossip's many receivers) a bounded chunk at a time, on
    arrival (add_by_chunks). The same sums either way: each group's rows in edge order. The edges
    to destinations that keep no rows (NO_ROW) add nothing; a lone receiver's one row is copied."""

    def __init__(self, sources: Sources, inverse: np.ndarray, w: np.ndarray, carry: np.ndarray, mine: slice,
                 first: int):
        e = np.flatnonzero((inverse >= mine.start) & (inverse < mine.stop) & (carry[inverse] != NO_ROW))
        self.sources, self.group, self.w, self.part = sources.subset(e), inverse[e] - first, w[e], None
        self.has = np.unique(self.group)  # the groups that edges reach
        if 8 * len(self.has) * sources.table.shape[1] <= CHUNK_BYTES:
            self.part = self.sources.reduce(np.searchsorted(self.has, self.group), self.w, len(self.has))

    def add(self, held: Held, local: np.ndarray) -> None:
        """Add group g's weighted sum into the sum of local row local[g] (g counted from `first`)."""
        at = held.place[local]
        lone = at[self.group] < 0
        if lone.any():
            held.put(at[self.group[lone]], self.sources.subset(np.flatnonzero(lone)).gather(
                np.arange(int(lone.sum())), torch.float32))
        if self.part is None:
            wide = np.flatnonzero(~lone)
            add_by_chunks(held.wide, at, self.sources.subset(wide), self.group[wide], self.w[wide])
        else:
            keep = at[self.has] >= 0
            held.wide.index_add_(0, torch.as_tensor(at[self.has[keep]], device=held.wide.device),
                                 self.part[torch.as_tensor(np.flatnonzero(keep), device=self.part.device)])


def partials(sources: Sources, inverse: np.ndarray, w: np.ndarray, carry: np.ndarray, to: list) -> list:
    """What this rank sends towards its remote destinations to[r] (a slice of the Mix's sorted
    destinations on rank r, empty for this rank), edge e reaching destination inverse[e]: per rank
    (the float64 partial sums [m, P] of its destinations that carry WIDE, each group's rows added in
    edge order; the float32 rows [k, P] of those that carry NARROW, each reached by one edge,
    unweighted), both in destination order. A NARROW row crosses as it is, at half the bytes of its
    float64 product (most of a Gossip round's rows), and `add_partials` weights it on arrival as
    `reduce` would have here, so the receivers' sums are the same bit for bit. The edges to NO_ROW
    destinations carry nothing."""
    dest = np.concatenate([np.arange(s.start, s.stop) for s in to])
    cuts, place = np.r_[0, np.cumsum([s.stop - s.start for s in to])], np.full(len(carry), -1)
    place[dest] = np.arange(len(dest))
    group, carry = place[inverse], carry[dest]
    n_part, n_lone = np.r_[0, np.cumsum(carry == WIDE)], np.r_[0, np.cumsum(carry == NARROW)]  # places by kind
    e = np.flatnonzero(group >= 0)
    wide, lone = e[carry[group[e]] == WIDE], e[carry[group[e]] == NARROW]
    part = sources.subset(wide).reduce(n_part[group[wide]], w[wide], int(n_part[-1]))
    rows = sources.subset(lone[np.argsort(group[lone])]).gather(np.arange(len(lone)), torch.float32)
    return [(part[n_part[a]:n_part[b]], rows[n_lone[a]:n_lone[b]]) for a, b in zip(cuts, cuts[1:])]


def add_partials(held: Held, local: np.ndarray, head, part: torch.Tensor, lone_rows: torch.Tensor) -> None:
    """Add what one rank sent (`partials`) towards the destinations of `head`, the local rows
    `local` (unread where the header says NO_ROW), into their sums: its partial sums, and its
    NARROW rows weighted by their edge's weight (the header's), as float64, or kept as they are by
    lone receivers."""
    carry, at, dev = head["carry"], held.place[local], held.wide.device
    held.wide.index_add_(0, torch.as_tensor(at[carry == WIDE], device=dev), part)
    narrow = np.flatnonzero(carry == NARROW)
    alone = at[narrow] < 0
    if alone.any():
        held.put(at[narrow[alone]], lone_rows if alone.all() else lone_rows[torch.as_tensor(np.flatnonzero(alone), device=dev)])
    rest = np.flatnonzero(~alone)
    weighted_sum(lone_rows, rest, at[narrow[rest]], head["weight"][narrow[rest]], len(held.wide), into=held.wide)


class SumBuffers:
    """The memory of the Mixes' receiver sums (Held), kept from round to round.

    A Mix's sums are as large as its receivers times P (4 GB for 63,000 Gossip receivers of
    logistic regression); allocated afresh, every page of them is faulted in again each round,
    which on the development VM took 7 s, twice the reduction itself. A buffer belongs to the
    k-th Mix of a purpose in a round, so a result is valid until the round ends.
    """

    def __init__(self):
        self.held: dict[tuple, torch.Tensor] = {}
        self.seen: dict[str, int] = {}

    def new_round(self) -> None:
        self.seen = {}

    def take(self, purpose: str, local: np.ndarray, carry: np.ndarray, n_local: int, p: int, device) -> Held:
        """Held sums for the local rows that a Mix's messages reach (message i reaches local[i] and
        carries carry[i]; NO_ROW ones reach but add nothing), zero, in the memory this purpose's Mix
        used last round; a receiver of one NARROW row and no other keeps it as it is (lone)."""
        return next(self.by_piece(purpose, local, carry, np.zeros(len(local), dtype=np.int64), 1, n_local, p, device))

    def by_piece(self, purpose: str, local: np.ndarray, carry: np.ndarray, piece: np.ndarray, count: int,
                 n_local: int, p: int, device):
        """Held sums as `take`'s, one piece of receivers after the other (message i belongs to piece[i]
        of `count`): each a Held of its piece's receivers, all in the memory of the largest piece,
        zeroed when yielded, so piece k's sums are valid until piece k + 1's are taken."""
        k = self.seen.get(purpose, 0)
        self.seen[purpose] = k + 1
        rows_in = np.bincount(local, carry != NO_ROW, n_local)
        lone = (rows_in == 1) & (np.bincount(local, carry == NARROW, n_local) == 1)
        wide = (rows_in > 0) & ~lone
        of = np.zeros(n_local, dtype=np.int64)
        of[local] = piece
        place = np.zeros(n_local, dtype=np.int64)
        place[wide], place[lone] = _within(of[wide]), -1 - _within(of[lone])
        n_wide, n_lone = np.bincount(of[wide], minlength=count), np.bincount(of[lone], minlength=count)
        wide_memory = self.memory((purpose, k, "wide"), int(n_wide.max(initial=0)), p, torch.float64, device)
        lone_memory = self.memory((purpose, k, "lone"), int(n_lone.max(initial=0)), p, torch.float32, device)
        for j in range(count):
            yield Held(wide_memory[:n_wide[j]].zero_(), lone_memory[:n_lone[j]], place,
                       np.flatnonzero((rows_in > 0) & (of == j)))

    def memory(self, key: tuple, rows: int, p: int, dtype, device) -> torch.Tensor:
        """[rows, P] of `dtype`, uninitialised: the memory that `key` had last round where it fits."""
        return reused(self.held, key, rows * p, dtype, device).view(rows, p)


def _within(groups: np.ndarray) -> np.ndarray:
    """int64 [len(groups)]: each element's index among those of its group, in order."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    out = np.empty(len(groups), dtype=np.int64)
    out[order] = np.arange(len(groups)) - np.searchsorted(sorted_groups, sorted_groups)
    return out
