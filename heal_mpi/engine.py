"""The engine: executes the steps a protocol yields (steps.py), the same way for every protocol.

Owns the *how* of a learning round: training through the Population, every simulated
message through the Channel (loss, alteration) with one message and its bytes counted per
edge, and the MPI traffic of model rows. Protocols never call MPI, so they cannot issue
collectives out of step: every Mix and Reply is exactly one `Comm.exchange`, named after
its purpose, on every rank.

Where rows live: a Mix first reduces its edges by destination on the rows' device
(one partial sum per destination node). Partials for nodes of this rank are added where
they are; only partials bound for other ranks are staged into contiguous host buffers for
MPI, and what arrives is moved to the device once. The bytes that cross between device
and host this way are counted (`staged_bytes`); on one rank they are 0. Results are
compact: sums only for the local nodes that received.

Transient memory of a HEAL round (n_local nodes, P parameters, H local hubs, C local
clients that get a copy back; the floor is the rows and optimizer state, 12 P bytes a node
with Adam): the up-mix reduces in chunks of at most CHUNK_BYTES of float64 edge rows,
then holds H float64 partial sums; the hub-hub mix H more; the reply holds only the
distinct answers (at most one per hub) and the clients' new rows are formed and assigned
a chunk at a time. Peak above the floor: a few CHUNK_BYTES, whatever C. (Gossip and
Epidemic mixes, where every node receives, hold one float64 sum per receiver: 8 P bytes
a node, 2/3 of the Adam floor; a Mix with arrival keys holds every float64 row that arrived,
about one per node for Gossip.)

Sums across ranks run in float64 and add the partial sums in source-rank order, so a
result does not depend on the rank count up to float64 rounding (exact for float32 rows of
similar magnitude; the tests compare to 1e-6).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from heal_mpi.channel import Channel
from heal_mpi.comm import Comm
from heal_mpi.context import RoundContext
from heal_mpi.metrics import RoundMetrics, Traffic
from heal_mpi.steps import Assign, Mix, Reply, Rule, Train

CHUNK_BYTES = 64 << 20  # bound on the float64 [edges, P] temporary of one reduction chunk


class MixResult:
    """What reached this rank's nodes in one Mix or Reply (see steps.Received).

    Attributes:
        counts, messages: int64 [n_local]; weights: float64 [n_local]; values: float64 [n_local, k].
        nodes: int64 [m], the local rows that received (counts > 0), sorted.
        pos: int64 [n_local], each local row's index in `nodes`, -1 if it received nothing.
        edges: (src local rows [E], dst global ids [E]) of the delivered edges this rank sent.
        sent_to: per rank, the distinct remote destinations this rank's partials went to, sorted.
        heard_from: per rank, the local rows that got a partial from that rank, in block order.

    The weighted sums ([m, P] on the rows' device) are either held (`sums`, a Mix: a few
    rows per receiver at most) or kept as terms (sums[k] = sum of w[e] * table[index[e]]
    over the edges e with group[e] == k, w None for 1). A Reply's table holds the few
    distinct answers, so a reply to every client costs the answers, not one row per client,
    until `sums_of` reads it; a Mix with `order` keeps every row that arrived, with each
    edge's place in its receiver's arrival order (`arrivals`, for `arrival(j)`).
    """

    def __init__(self, n_local: int, nodes: np.ndarray, sums: torch.Tensor | None, weights, counts, messages,
                 values=None, edges=None, sent_to=None, heard_from=None, terms=None, arrivals=None):
        self.nodes, self._sums, self._terms, self._arrivals = nodes, sums, terms, arrivals
        self.counts, self.messages, self.weights = counts, messages, weights
        self.values = np.zeros((n_local, 0)) if values is None else values
        self.pos = np.full(n_local, -1, dtype=np.int64)
        self.pos[nodes] = np.arange(len(nodes))
        self.edges, self.sent_to, self.heard_from = edges, sent_to, heard_from

    def _terms_of(self, at: np.ndarray) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray | None]:
        """(table, index into it, group in 0..len(at)-1, weights or None) of the terms of nodes[at]."""
        table, index, group, w = self._terms
        where = np.full(len(self.nodes), -1, dtype=np.int64)
        where[at] = np.arange(len(at))
        keep = where[group] >= 0
        return table, index[keep], where[group[keep]], None if w is None else w[keep]

    def sums_of(self, at: np.ndarray) -> torch.Tensor:
        """[len(at), P]: the weighted sums of nodes[at] (a copy; float64 for kept terms)."""
        if self._terms is None:
            return self._sums[torch.as_tensor(at, device=self._sums.device)]
        table, index, group, w = self._terms_of(at)
        return weighted_sum(table, index, group, w, len(at))

    def arrival(self, j: int) -> "MixResult":
        """The j-th edge to reach each node, alone (steps.Received.arrival)."""
        if self._arrivals is None:
            raise ValueError("arrival(j) needs the result of a Mix with `order`, which keeps the rows one by one")
        place, local, real, values = self._arrivals
        table, index, _, w = self._terms
        sel = np.flatnonzero(place == j)
        nodes, n = local[sel], len(self.pos)  # one edge per node: nodes ascend with sel
        weights, counts, messages = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
        out_values = np.zeros((n, values.shape[1]))
        weights[nodes], counts[nodes], messages[nodes], out_values[nodes] = w[sel], 1, real[sel], values[sel]
        return MixResult(n, nodes, None, weights, counts, messages, out_values,
                         terms=(table, index[sel], np.arange(len(sel)), w[sel]))

    def combine(self, at: np.ndarray, rule: Rule) -> torch.Tensor:
        """[len(at), P]: nodes[at]'s rows that arrived one by one (a Reply), combined by a robust rule."""
        if self._terms is None:
            raise ValueError(f"a {rule.name} of the copies needs a Reply result, which keeps them one by one")
        from heal_mpi.aggregation import aggregate
        table, index, group, _ = self._terms_of(at)
        rows = table[torch.as_tensor(index, device=table.device)]
        return aggregate(rule.name, rows, group, len(at), beta=rule.beta, clip_tau=rule.clip_tau)

    def means(self) -> torch.Tensor:
        """float32 [m, P]: the weighted mean of each receiving node (order of `nodes`)."""
        sums = self.sums_of(np.arange(len(self.nodes))).double()
        w = torch.as_tensor(self.weights[self.nodes], dtype=torch.float64, device=sums.device)
        return (sums / w[:, None]).to(torch.float32)


class Sources:
    """The row each edge of a Mix carries: the sender's honest row (table[index]), except on
    the edges whose sender the channel says forges (`lying`), which carry `forged[forged_index]`.
    A node's edge to itself is never a message, so it is never forged."""

    def __init__(self, table: torch.Tensor, index: np.ndarray, forged=None, lying=None, forged_index=None):
        self.table, self.index, self.forged = table, index, forged
        self.lying = np.zeros(len(index), dtype=bool) if lying is None else lying
        self.forged_index = forged_index

    def gather(self, edges: np.ndarray) -> torch.Tensor:
        """float64 [len(edges), P]: the rows the edges carry."""
        dev = self.table.device
        out = self.table[torch.as_tensor(self.index[edges], device=dev)].double()
        lying = self.lying[edges]
        if lying.any():
            out[torch.as_tensor(np.flatnonzero(lying), device=dev)] = \
                self.forged[torch.as_tensor(self.forged_index[edges[lying]], device=dev)].double()
        return out

    def reduce(self, group: np.ndarray, w: np.ndarray, n_out: int) -> torch.Tensor:
        """float64 [n_out, P]: sum of w * row per group."""
        honest = ~self.lying
        part = weighted_sum(self.table, self.index[honest], group[honest], w[honest], n_out)
        if self.lying.any():
            part += weighted_sum(self.forged, self.forged_index[self.lying], group[self.lying], w[self.lying], n_out)
        return part


def weighted_sum(table: torch.Tensor, index: np.ndarray, group: np.ndarray, w: np.ndarray | None,
                 n_out: int, dtype=torch.float64) -> torch.Tensor:
    """[n_out, P] of `dtype`: sum of w * table[index] per group, in chunks of edges (so no
    [edges, P] temporary larger than CHUNK_BYTES exists)."""
    p, dev = table.shape[1], table.device
    out = torch.zeros((n_out, p), dtype=dtype, device=dev)
    chunk = max(1, CHUNK_BYTES // (8 * max(p, 1)))
    for a in range(0, len(index), chunk):
        rows = table[torch.as_tensor(index[a:a + chunk], device=dev)].to(dtype)
        if w is not None:
            rows.mul_(torch.as_tensor(w[a:a + chunk], dtype=dtype, device=dev)[:, None])
        out.index_add_(0, torch.as_tensor(group[a:a + chunk], device=dev), rows)
    return out


class Engine:
    """Runs a protocol's rounds on this rank's Population. Collective over `world.comm`.

    Attributes (of the last round): traffic (Traffic), train_loss float64 [n_local],
    protocol_metrics (what the protocol's round returned), staged_bytes, train_seconds,
    train_samples.
    """

    def __init__(self, world, pop, protocol, channel: Channel, model_bytes: int | None = None):
        self.world, self.pop, self.protocol, self.channel = world, pop, protocol, channel
        self.comm = Comm(world)
        self.model_bytes = model_bytes or int(pop.n_params) * 4  # float32 parameters
        self.before_train: list = []  # hooks (pop, nodes bool [n_local]) called before a Train step: attackers' memory
        self._fresh_round()

    def _fresh_round(self) -> None:
        n = self.world.n_local
        self.traffic = Traffic(n)
        self.train_loss = np.full(n, np.nan)
        self.protocol_metrics: dict = {}
        self.staged_bytes = 0
        self.train_seconds, self.train_samples = 0.0, 0

    # ------------------------------------------------------------------ the round
    def round(self, ctx: RoundContext, overlay) -> None:
        """Newcomers get fresh models, then the protocol's steps run one by one."""
        self._fresh_round()
        lo, hi = self.world.slot_lo, self.world.slot_hi
        joined = ctx.joined[(ctx.joined >= lo) & (ctx.joined < hi)]
        if len(joined):
            self.pop.init_nodes(joined - lo, ctx.incarnation[joined])
            self.protocol.on_join(joined - lo)
        steps = self.protocol.round(ctx, overlay)
        answer = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as end:
                self.protocol_metrics = end.value or {}
                return
            answer = self.execute(step, ctx)

    def execute(self, step, ctx: RoundContext):
        if isinstance(step, Train):
            return self._train(step, ctx)
        if isinstance(step, Mix):
            return self._mix(step, ctx)
        if isinstance(step, Reply):
            return self._reply(step, ctx)
        if isinstance(step, Assign):
            return self._assign(step)
        raise TypeError(f"{type(self.protocol).__name__} yielded {step!r}, not a step")

    def contribute(self, metrics: RoundMetrics, honest: np.ndarray | None = None) -> None:
        """This round's model traffic, train loss (of the `honest` nodes), staging and protocol metrics."""
        self.traffic.contribute(metrics, "model")
        loss = self.train_loss if honest is None else np.where(honest, self.train_loss, np.nan)
        metrics.add_mean("train_loss_mean", loss)
        metrics.add_sum("train_samples", self.train_samples)
        metrics.add_sum("staged_bytes", self.staged_bytes)
        metrics.add_sum("mpi_bytes", self.comm.take_bytes())
        for name, value in self.protocol_metrics.items():
            metrics.add_sum(name, value)

    # ------------------------------------------------------------------ the steps
    def _train(self, step: Train, ctx: RoundContext) -> np.ndarray:
        local = self.world.local_slots
        for hook in self.before_train:
            hook(self.pop, np.asarray(step.nodes, dtype=bool))
        before_s, before_n = self.pop.train_seconds, self.pop.train_samples
        loss = self.pop.train(step.nodes, ctx.rnd, ctx.incarnation[local], repeat=step.repeat)
        self.train_seconds += self.pop.train_seconds - before_s
        self.train_samples += self.pop.train_samples - before_n
        self.train_loss = np.where(np.isnan(loss), self.train_loss, loss)
        return loss

    def _sources(self, purpose: str, rows, src: np.ndarray, dst: np.ndarray, rnd: int) -> Sources:
        """What each edge carries: the senders' rows, and the channel's forgeries on the edges of
        forging senders (only those rows are copied and altered)."""
        if rows is None:
            table, index = self.pop.rows, src
        else:
            if (rows.pos[src] < 0).any():
                raise ValueError(f"Mix {purpose!r}: a sender has no row in the result it sends from")
            table, index = rows.means(), rows.pos[src]
        if not self.channel.alterations:
            return Sources(table, index)
        lo = self.world.slot_lo
        lying = self.channel.forging(purpose, src + lo) & (src + lo != dst)
        if not lying.any():
            return Sources(table, index)
        senders, first, forged_at = np.unique(src[lying], return_index=True, return_inverse=True)
        honest = table[torch.as_tensor(index[lying][first], device=table.device)]
        forged = self.channel.alter(purpose, senders + lo, honest, rnd)
        forged_index = np.full(len(index), -1, dtype=np.int64)
        forged_index[lying] = forged_at
        return Sources(table, index, forged, lying, forged_index)

    def _mix(self, step: Mix, ctx: RoundContext) -> MixResult:
        world, size, rank, lo = self.world, self.world.size, self.world.rank, self.world.slot_lo
        src = np.asarray(step.src, dtype=np.int64)
        dst = np.asarray(step.dst, dtype=np.int64)
        w = np.ones(len(dst)) if step.weight is None else np.asarray(step.weight, dtype=np.float64)
        vals = np.zeros((len(dst), 0))
        if step.values is not None:
            vals = np.asarray(step.values, np.float64).reshape(len(dst), -1)
        real = src + lo != dst  # a node's edge to itself is no message
        self.traffic.send(src[real], self.model_bytes)
        ok = self.channel.delivered(step.purpose, src + lo, dst, ctx.rnd)
        src, dst, w, vals, real = src[ok], dst[ok], w[ok], vals[ok], real[ok]
        sources = self._sources(step.purpose, step.rows, src, dst, ctx.rnd)
        if step.order is not None:
            if step.rule.robust:
                raise ValueError(f"Mix {step.purpose!r}: a {step.rule.name} combines the rows at once; "
                                 "`order` keeps them one by one")
            return self._mix_rows(step, src, dst, w, vals, real, sources, np.asarray(step.order, np.float64)[ok])
        if step.rule.robust:
            return self._mix_rows(step, src, dst, w, vals, real, sources, np.zeros(len(dst)))

        # rank-local reduction: one partial (dst, weight sum, count, messages, values, row sum) per destination
        uniq, inverse = np.unique(dst, return_inverse=True)
        part = sources.reduce(inverse, w, len(uniq))  # [U, P] on the device
        head = np.concatenate([np.stack([uniq.astype(np.float64),  # ids exact below 2**53
                                         np.bincount(inverse, w, len(uniq)),
                                         np.bincount(inverse, minlength=len(uniq)).astype(np.float64),
                                         np.bincount(inverse, real, len(uniq))], axis=1),
                               _group_sum(vals * w[:, None], inverse, len(uniq))], axis=1)  # [U, 4 + k]
        cuts = np.searchsorted(world.owner(uniq), np.arange(size + 1))
        incoming = self.comm.exchange(self._stage_by_owner(head, cuts, lambda a, b: part[a:b], part.shape[1]),
                                      f"mix-{step.purpose}")

        k = head.shape[1] - 4
        mine = slice(cuts[rank], cuts[rank + 1])
        blocks = [(head[mine], part[mine]) if r == rank else (incoming[r][:, :4 + k], incoming[r][:, 4 + k:])
                  for r in range(size)]
        local_of = [blk[:, 0].astype(np.int64) - lo for blk, _ in blocks]
        nodes = np.unique(np.concatenate(local_of))  # one block per rank: never an empty list
        table = sources.table
        sums = torch.zeros((len(nodes), table.shape[1]), dtype=torch.float64, device=table.device)
        n = world.n_local
        weights, counts, messages, values = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros((n, k))
        for r, ((blk, rows), rows_of) in enumerate(zip(blocks, local_of)):  # canonical: source rank 0, 1, ...
            if len(blk) == 0:
                continue
            if r != rank:
                rows = torch.as_tensor(rows, device=sums.device)
                self.staged_bytes += rows.numel() * 8
            sums.index_add_(0, torch.as_tensor(np.searchsorted(nodes, rows_of), device=sums.device), rows)
            np.add.at(weights, rows_of, blk[:, 1])
            np.add.at(counts, rows_of, blk[:, 2].astype(np.int64))
            np.add.at(messages, rows_of, blk[:, 3].astype(np.int64))
            np.add.at(values, rows_of, blk[:, 4:])
        self.traffic.recv(np.flatnonzero(messages), self.model_bytes, messages[messages > 0])
        return MixResult(n, nodes, sums, weights, counts, messages, values, edges=(src, dst),
                         sent_to=[uniq[cuts[r]:cuts[r + 1]] if r != rank else None for r in range(size)],
                         heard_from=[rows_of if r != rank else None for r, rows_of in enumerate(local_of)])

    def _stage_by_owner(self, head: np.ndarray, cuts: np.ndarray, rows_of, p: int) -> list[np.ndarray]:
        """Per rank r: head[cuts[r]:cuts[r + 1]] beside its float64 model rows `rows_of(a, b)` [., p],
        copied to the host; nothing for this rank, whose rows stay on the device."""
        outgoing = []
        for r in range(self.world.size):
            a, b = cuts[r], cuts[r + 1]
            if r == self.world.rank:
                outgoing.append(np.zeros((0, head.shape[1] + p)))  # exchange reads the width from it
                continue
            rows = rows_of(a, b).cpu().numpy()
            self.staged_bytes += rows.nbytes
            outgoing.append(np.concatenate([head[a:b], rows], axis=1))
        return outgoing

    def _mix_rows(self, step: Mix, src, dst, w, vals, real, sources: Sources, key: np.ndarray) -> MixResult:
        """A Mix under a robust rule, or one with arrival keys: every delivered row travels to its
        receiver's rank (no partial sums), where each receiver combines its rows by the rule or
        keeps them one by one. Rows are put in (receiver, key, sender) order first, so the
        result does not depend on the rank count."""
        from heal_mpi.aggregation import aggregate
        world, size, rank, lo = self.world, self.world.size, self.world.rank, self.world.slot_lo
        order = np.lexsort((src, dst))  # edges by receiver: the owners' blocks are contiguous
        src, dst, w, vals, real, key = src[order], dst[order], w[order], vals[order], real[order], key[order]
        p, dev = sources.table.shape[1], sources.table.device
        head = np.concatenate([np.stack([dst, src + lo, w, real, key], axis=1).astype(np.float64), vals], axis=1)
        cuts = np.searchsorted(world.owner(dst), np.arange(size + 1))
        outgoing = self._stage_by_owner(head, cuts, lambda a, b: sources.gather(order[a:b]), p)
        incoming = self.comm.exchange(outgoing, f"mix-{step.purpose}")
        width = head.shape[1]
        heads, rows = [], []
        for r in range(size):  # what reached this rank, rank by rank
            if r == rank:
                heads.append(head[cuts[rank]:cuts[rank + 1]])
                rows.append(sources.gather(order[cuts[rank]:cuts[rank + 1]]))
            elif len(incoming[r]):
                heads.append(incoming[r][:, :width])
                rows.append(torch.as_tensor(incoming[r][:, width:], device=dev))
                self.staged_bytes += rows[-1].numel() * 8
        heads = np.concatenate(heads)
        rows = torch.cat(rows)
        canon = np.lexsort((heads[:, 1], heads[:, 4], heads[:, 0]))  # (receiver, key, sender)
        heads, rows = heads[canon], rows[torch.as_tensor(canon, device=rows.device)]
        local = heads[:, 0].astype(np.int64) - lo
        nodes, group = np.unique(local, return_inverse=True)
        n, k = world.n_local, width - 5
        edge_w, edge_real, edge_values = heads[:, 2], heads[:, 3].astype(np.int64), heads[:, 5:] * heads[:, 2:3]
        weights = np.bincount(local, edge_w, n)
        counts = np.bincount(local, minlength=n).astype(np.int64)
        messages = np.bincount(local, edge_real, n).astype(np.int64)
        values = np.zeros((n, k))
        np.add.at(values, local, edge_values)
        self.traffic.recv(np.flatnonzero(messages), self.model_bytes, messages[messages > 0])
        sender_rank = world.owner(heads[:, 1].astype(np.int64))
        uniq = np.unique(dst)
        ucuts = np.searchsorted(world.owner(uniq), np.arange(size + 1))
        links = dict(edges=(src, dst),
                     sent_to=[uniq[ucuts[r]:ucuts[r + 1]] if r != rank else None for r in range(size)],
                     heard_from=[np.unique(local[sender_rank == r]) if r != rank else None for r in range(size)])
        if step.order is not None:  # kept one by one; place = index among the receiver's edges
            place = np.arange(len(local)) - np.searchsorted(local, local)
            return MixResult(n, nodes, None, weights, counts, messages, values, **links,
                             terms=(rows, np.arange(len(local)), group, edge_w),
                             arrivals=(place, local, edge_real, edge_values))
        combined = aggregate(step.rule.name, rows, group, len(nodes), beta=step.rule.beta, clip_tau=step.rule.clip_tau)
        sums = combined * torch.as_tensor(weights[nodes], dtype=combined.dtype, device=combined.device)[:, None]
        return MixResult(n, nodes, sums, weights, counts, messages, values, **links)

    def _reply(self, step: Reply, ctx: RoundContext) -> MixResult:
        """Answer along `step.to`'s delivered edges: one exchange, each answering row sent once per rank."""
        world, size, rank, lo = self.world, self.world.size, self.world.rank, self.world.slot_lo
        to, answering = step.to, np.asarray(step.answering, dtype=bool)
        ans = np.flatnonzero(answering)
        if (step.rows.pos[ans] < 0).any():
            raise ValueError(f"Reply {step.purpose!r}: an answering node has no row in `rows`")
        table = step.rows.means()  # float32 [m, P], rows of step.rows.nodes
        lying = ans[self.channel.forging(step.purpose, ans + lo)] if self.channel.alterations else ans[:0]
        if len(lying):  # what a forging node answers, every receiver alike (its own copy is no message)
            at = torch.as_tensor(step.rows.pos[lying], device=table.device)
            table[at] = self.channel.alter(step.purpose, lying + lo, table[at], ctx.rnd).to(table.dtype)
        self.traffic.send(ans, self.model_bytes, to.messages[ans])

        outgoing = []
        for r in range(size):  # to every rank that reached us: ready flags, then the ready rows
            asked = to.heard_from[r] if r != rank else None
            if asked is None or len(asked) == 0:
                outgoing.append(np.zeros(0, np.float32))
                continue
            ready = answering[asked]
            rows = table[torch.as_tensor(step.rows.pos[asked[ready]], device=table.device)].cpu().numpy()
            self.staged_bytes += rows.nbytes
            outgoing.append(np.concatenate([ready.astype(np.float32), rows.ravel()]))
        incoming = self.comm.exchange(outgoing, f"reply-{step.purpose}")

        # every answer this rank can use, by global id of the answering node
        ids, parts = [ans + lo], [table[torch.as_tensor(step.rows.pos[ans], device=table.device)]]
        p = table.shape[1]
        for r in range(size):
            asked = to.sent_to[r] if r != rank else None
            if asked is None or len(asked) == 0:
                continue
            ready = incoming[r][:len(asked)] > 0
            ids.append(asked[ready])
            parts.append(torch.as_tensor(incoming[r][len(asked):].reshape(-1, p), device=table.device))
            self.staged_bytes += parts[-1].numel() * 4
        ids = np.concatenate(ids)
        order = np.argsort(ids, kind="stable")
        ids, answers = ids[order], torch.cat(parts)[torch.as_tensor(order, device=table.device)]

        src, dst = to.edges  # the edges this rank's nodes sent: now answered dst -> src
        j = np.minimum(np.searchsorted(ids, dst), max(len(ids) - 1, 0))
        has = ids[j] == dst if len(ids) else np.zeros(len(dst), bool)  # j is clipped into range above
        ok = has & self.channel.delivered(step.purpose, dst, src + lo, ctx.rnd)
        src, j, real = src[ok], j[ok], (src + lo != dst)[ok]
        n = world.n_local
        nodes = np.unique(src)
        counts = np.bincount(src, minlength=n).astype(np.int64)
        messages = np.bincount(src[real], minlength=n).astype(np.int64)
        self.traffic.recv(np.flatnonzero(messages), self.model_bytes, messages[messages > 0])
        return MixResult(n, nodes, None, counts.astype(np.float64), counts, messages,
                         terms=(answers, j, np.searchsorted(nodes, src), None))

    def _assign(self, step: Assign) -> None:
        """New rows for step.nodes, a bounded chunk of rows at a time."""
        nodes = np.asarray(step.nodes, dtype=np.int64)
        res = step.result
        at = res.pos[nodes]
        if (at < 0).any():
            raise ValueError("Assign: a node takes a mean of a result it received nothing in")
        own_weight = None if step.own_weight is None else np.asarray(step.own_weight, dtype=np.float64)
        chunk = max(1, CHUNK_BYTES // (8 * max(self.pop.n_params, 1)))
        if step.rule.robust and own_weight is not None:
            raise ValueError(f"Assign: a {step.rule.name} of the copies takes no own weight")
        for a in range(0, len(nodes), chunk):
            idx = nodes[a:a + chunk]
            if step.rule.robust:
                self.pop.replace(idx, res.combine(at[a:a + chunk], step.rule))
                continue
            rows = res.sums_of(at[a:a + chunk])
            dev = rows.device
            w = torch.as_tensor(res.weights[idx], dtype=rows.dtype, device=dev)[:, None]
            if own_weight is not None:
                own = torch.as_tensor(own_weight[a:a + chunk], dtype=rows.dtype, device=dev)[:, None]
                rows.add_(self.pop.rows[torch.as_tensor(idx, device=dev)].to(rows.dtype) * own)
                w = w + own
            self.pop.replace(idx, rows.div_(w))


def _group_sum(x: np.ndarray, inverse: np.ndarray, n: int) -> np.ndarray:
    """[n, k]: rows of x [E, k] summed per group."""
    out = np.zeros((n, x.shape[1]))
    np.add.at(out, inverse, x)
    return out
