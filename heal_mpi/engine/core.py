"""The engine: executes the steps a protocol yields (heal_mpi/steps.py), the same way for every protocol.

Owns the *how* of a learning round: training through the Population, every simulated
message through the Channel (loss, alteration) with one message and its bytes counted per
edge, and the MPI traffic of model rows. Protocols never call MPI, so they cannot issue
collectives out of step: every Mix, Reply and Exchange is exactly one collective step,
named after its purpose, on every rank (heal_mpi/comm.py checks that the ranks agree).

Where rows live: a Mix reduces its edges by destination on the rows' device (engine/summing.py):
a float64 partial sum per destination, the float32 row itself for one that a single edge reaches,
nothing for one that keeps no rows (Mix.keep). What is bound for other ranks is staged into host
memory for MPI (routes.route; a Mix's rows in pieces of receivers), moved to the device on arrival.

Transient memory of a HEAL round above the floor (the rows and optimizer state): a few CHUNK_BYTES
(reductions in bounded chunks, one float64 sum per local hub, the reply's few distinct answers).
Gossip and EL merge as their rows arrive (Mix.merge, engine/merging.py): they hold one piece of
receivers' sums (a float64 sum per receiver of several rows, the float32 row of one that a single
row reaches), a piece of rows in flight, and the new rows of receivers whose old rows a later
piece still reads; a Mix with arrival keys every row that arrived, a Snapshot one float32 row per
kept node, rows in flight one each.

Sums across ranks run in float64 and add the partial sums in source-rank order, so a result
does not depend on the rank count up to float64 rounding (the tests compare to 1e-6).
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.clock import NEXT
from heal_mpi.comm import Comm
from heal_mpi.context import RoundContext
from heal_mpi.engine.aggregation import aggregate
from heal_mpi.engine.channel import Channel
from heal_mpi.engine.flights import Flights
from heal_mpi.engine.results import HeardEdges, HeldRows, Links, MixResult, edge_values, group_sum, tally
from heal_mpi.engine.merging import Merging, assign_means
from heal_mpi.engine.summing import Held, OwnEdges, Sources, SumBuffers, add_partials, partials
from heal_mpi.engine.routes import NARROW, NO_ROW, WIDE, Block, Header, Pieces, route, route_heads, route_rows
from heal_mpi.metrics import RoundMetrics, Traffic
from heal_mpi.overlay.common import HEADER_BYTES, ID_BYTES
from heal_mpi.steps import Assign, Exchange, Mix, Reply, Snapshot, Train


class Engine:
    """Runs a protocol's rounds on this rank's Population. Collective over `world.comm`.

    Args:
        comm: the run's Comm (shared with the overlay, so that the ranks' steps are checked
            against each other); a fresh one when None.
        clock: a heal_mpi.clock.Clock that times every step in simulated seconds; None: no clock.

    Attributes (of the last round): traffic (model messages) and control (Exchange messages),
    both Traffic; train_loss float64 [n_local]; protocol_metrics (what the protocol's round
    returned), staged_bytes, train_seconds, train_samples.
    """

    def __init__(self, world, pop, protocol, channel: Channel, model_bytes: int | None = None, comm: Comm | None = None,
                 clock=None):
        self.world, self.pop, self.protocol, self.channel = world, pop, protocol, channel
        self.comm = comm if comm is not None else Comm(world)
        self.clock = clock  # heal_mpi.clock.Clock: the simulated time of every step; None = no clock
        self.model_bytes = model_bytes or int(pop.n_params) * 4  # float32 parameters
        self.before_train: list = []  # hooks (pop, nodes bool [n_local]) called before a Train step: attackers' memory
        self.flights = Flights()  # asynchronous rounds: rows sent that arrive in a later round
        self.sum_buffers = SumBuffers()
        self._fresh_round()

    def _fresh_round(self) -> None:
        n = self.world.n_local
        self.traffic, self.control = Traffic(n), Traffic(n)
        self.train_loss = np.full(n, np.nan)
        self.protocol_metrics: dict = {}
        self.staged_bytes, self.train_seconds, self.train_samples = 0, 0.0, 0
        self.sum_buffers.new_round()

    # ------------------------------------------------------------------ the round
    def round(self, ctx: RoundContext, overlay) -> None:
        """Newcomers get fresh models, then the protocol's steps run one by one."""
        self._fresh_round()
        lo, hi = self.world.slot_lo, self.world.slot_hi
        joined = np.setdiff1d(ctx.joined, ctx.returned)  # newcomers; a node back online keeps its model
        joined = joined[(joined >= lo) & (joined < hi)]
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
        for kind, run in ((Train, self._train), (Mix, self._mix), (Reply, self._reply), (Assign, self._assign),
                          (Exchange, self._exchange), (Snapshot, self._snapshot)):
            if isinstance(step, kind):
                return run(step, ctx)
        raise TypeError(f"{type(self.protocol).__name__} yielded {step!r}, not a step")

    def contribute(self, metrics: RoundMetrics, honest: np.ndarray | None = None) -> None:
        """This round's model and control traffic, train loss (of the `honest` nodes), staging and protocol metrics."""
        self.traffic.contribute(metrics, "model")
        self.control.contribute(metrics, "control")
        loss = self.train_loss if honest is None else np.where(honest, self.train_loss, np.nan)
        metrics.add_mean("train_loss_mean", loss)
        metrics.add_sum("train_samples", self.train_samples)
        metrics.add_sum("staged_bytes", self.staged_bytes)
        for name, value in self.protocol_metrics.items():
            metrics.add_sum(name, value)
        if self.clock is not None and self.clock.timers is not None:
            metrics.add_sum("in_flight", self.flights.count())

    # ------------------------------------------------------------------ the steps
    def _train(self, step: Train, ctx: RoundContext) -> np.ndarray:
        nodes = np.asarray(step.nodes, dtype=bool)
        rows = self.pop.rows
        if step.start is not None:  # train from the held rows; the current rows move by the update
            sel = torch.as_tensor(np.flatnonzero(nodes), device=rows.device)
            current, held = rows[sel].clone(), step.start.of(np.flatnonzero(nodes))
            rows.index_copy_(0, sel, held)
        for hook in self.before_train:
            hook(self.pop, nodes)
        before_s, before_n = self.pop.train_seconds, self.pop.train_samples
        loss = self.pop.train(nodes, ctx.rnd, ctx.incarnation[self.world.local_slots], repeat=step.repeat)
        self.train_seconds += self.pop.train_seconds - before_s
        self.train_samples += self.pop.train_samples - before_n
        if self.clock is not None:
            self.clock.train(self.pop.last_seen)
        if step.start is not None:
            rows.index_copy_(0, sel, current.add_(rows[sel] - held))
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
        return Sources.through(self.channel, purpose, table, index, src + self.world.slot_lo, dst, rnd)

    def _keeping(self, step: Mix) -> np.ndarray:
        """bool [N]: whether each node takes the rows a Mix sends it (Mix.keep, from every rank)."""
        if step.keep is None:
            return np.ones(self.world.n_nodes, dtype=bool)
        return self.comm.all_flags(step.keep, f"keep-{step.purpose}", f"Mix {step.purpose!r}: keep")

    def _by_owner(self, dst: np.ndarray) -> np.ndarray:
        """Cuts [size + 1] of `dst` (sorted by owner) into the owners' blocks."""
        return np.searchsorted(self.world.owner(dst), np.arange(self.world.size + 1))

    def _links(self, src, dst, uniq, heard_from) -> Links:
        rank, cuts = self.world.rank, self._by_owner(uniq)
        return Links((src, dst), [uniq[cuts[r]:cuts[r + 1]] if r != rank else None for r in range(self.world.size)],
                     heard_from)

    def _mix(self, step: Mix, ctx: RoundContext) -> MixResult:
        lo = self.world.slot_lo
        src, dst = np.asarray(step.src, dtype=np.int64), np.asarray(step.dst, dtype=np.int64)
        if step.merge is not None and np.shape(step.merge) != (self.world.n_local,):
            raise ValueError(f"Mix {step.purpose!r}: merge has shape {np.shape(step.merge)}, not {(self.world.n_local,)}")
        w = np.ones(len(dst)) if step.weight is None else np.asarray(step.weight, dtype=np.float64)
        vals = edge_values(step.values, len(dst))
        real = src + lo != dst  # a node's edge to itself is no message
        self.traffic.send(src[real], self.model_bytes)
        ok = self.channel.delivered(step.purpose, src + lo, dst, ctx.rnd)
        if step.order is not None and step.rule.robust:
            raise ValueError(f"Mix {step.purpose!r}: a {step.rule.name} combines the rows at once; `order` keeps them "
                             "one by one")
        key = np.zeros(len(dst)) if step.order is None else np.asarray(step.order, np.float64)
        ok, reached = (ok, None) if self.clock is None else self._timed(step, src, dst, w, vals, real, ok, key, ctx)
        src, dst, w, vals, real, key = src[ok], dst[ok], w[ok], vals[ok], real[ok], key[ok]
        landed = self.flights.land(step.purpose, ctx.rnd)
        if landed is not None:  # sent in earlier rounds, arriving now: after this round's edges
            src, dst, w, key = (np.r_[a, landed[k]] for a, k in ((src, "src"), (dst, "dst"), (w, "weight"), (key, "key")))
            real = np.r_[real, np.ones(len(landed["src"]), dtype=bool)]
            vals = np.concatenate([vals, landed["values"]])
        result = self._mix_delivered(step, src, dst, w, vals, real, None if step.order is None else key, ctx,
                                     None if landed is None else landed["rows"])
        if reached is not None:
            result.links = reached
        return result

    def _timed(self, step: Mix, src, dst, w, vals, real, ok, key, ctx: RoundContext):
        """The clock times the edges: (those taken now, bool [E]; the Links a Reply answers along, late
        senders included, or None). The others are dropped, or held in flight (Flights) for later."""
        timed = self.clock.transfer(f"mix-{step.purpose}", src[real] + self.world.slot_lo, dst[real], ok[real],
                                    self.model_bytes, True, wait=step.deadline, flights=True)
        if timed is None:
            return ok, None
        due = np.zeros(len(dst), dtype=np.int64)  # 0 now, NEXT or k > 0: held, DROPPED: dropped
        due[np.flatnonzero(real)], heard = timed
        now = ok & (due <= 0)
        reached = self._links(src[now], dst[now], np.unique(dst[now]), heard)
        later = np.flatnonzero(ok & ((due > 0) | (due == NEXT)))
        if len(later):
            stale = due[later] == NEXT
            sources = self._sources(step.purpose, step.rows, src[later], dst[later], ctx.rnd)
            rows = sources.gather(np.arange(len(later)), self.pop.rows.dtype)
            self.flights.hold(step.purpose, ctx.rnd + np.where(stale, 1, due[later]), src[later], dst[later],
                              w[later] * np.where(stale, self.clock.staleness, 1.0), vals[later], key[later], rows)
        return ok & (due == 0), reached

    def _mix_delivered(self, step: Mix, src, dst, w, vals, real, key, ctx: RoundContext, landed=None) -> MixResult:
        """The delivered edges' rows reduced where they live (robust or keyed: one by one); the last
        len(landed) edges carry `landed`, rows sent in earlier rounds. Receivers merge (Mix.merge)
        piece by piece, or after a Mix whose rows travel one by one."""
        world, size, rank, lo = self.world, self.world.size, self.world.rank, self.world.slot_lo
        fresh = len(src) - (0 if landed is None else len(landed))
        sources = self._sources(step.purpose, step.rows, src[:fresh], dst[:fresh], ctx.rnd).extended(landed)
        keeps = self._keeping(step)
        if key is not None or step.rule.robust:
            key = np.zeros(len(dst)) if key is None else key
            result = self._mix_rows(step, src, dst, w, vals, real, sources, key, keeps)
            if step.merge is not None:  # the Assign after the Mix
                own = np.asarray(step.merge, dtype=np.float64)[result.nodes]
                assign_means(result, result.nodes[~np.isnan(own)], own[~np.isnan(own)], self.pop.rows,
                             self.pop.replace, step.rule)
            return result
        # per destination a header (dst, weight sum, count, messages, values) and what it carries (summing.partials)
        uniq, inverse = np.unique(dst, return_inverse=True)
        u, count = len(uniq), np.bincount(inverse, minlength=len(uniq))
        carry = np.where((count == 1) & sources.narrow, NARROW, WIDE)
        carry[~keeps[uniq]] = NO_ROW
        head = Header(dst=uniq, weight=np.bincount(inverse, w, u), count=count, messages=np.bincount(inverse, real, u),
                      values=group_sum(vals * w[:, None], inverse, u), carry=carry)
        cuts, name = self._by_owner(uniq), f"mix-{step.purpose}"
        incoming = route_heads(self.comm, name, [head.take(slice(cuts[r], cuts[r + 1])) for r in range(size)])
        local_of = [h.ids("dst") - lo for h in incoming]
        heads = Header.of(head.layout, np.concatenate([h.data for h in incoming]))
        local = heads.ids("dst") - lo  # what every message reached, by rank
        weights, counts, messages, values = tally(world.n_local, local, heads["weight"], heads.ids("count"),
                                                  heads.ids("messages"), heads["values"])
        result = MixResult(world.n_local, np.unique(local[heads["carry"] != NO_ROW]), counts, messages, weights, values)
        pieces = Pieces(keeps, world.bounds, 8 * self.pop.n_params)
        merging = None if step.merge is None else self._merging(
            step, src[:fresh], dst[:fresh], sources, carry[inverse[:fresh]], local, heads["carry"], pieces, result)
        if merging is None:
            result.held = self.sum_buffers.take(step.purpose, local, heads["carry"], world.n_local, self.pop.n_params,
                                                self.pop.rows.device)
        sent = [cuts[r] + pieces.cuts(uniq[cuts[r]:cuts[r + 1]]) for r in range(size)]
        heard = [pieces.cuts(ids + lo) for ids in local_of]
        for k in range(pieces.count):  # one piece of receivers' rows at a time, each added in rank order
            out = [slice(sent[r][k], sent[r][k + 1]) for r in range(size)]
            got = [slice(heard[r][k], heard[r][k + 1]) for r in range(size)]
            rows = partials(sources, inverse, w, carry, [slice(0, 0) if r == rank else s for r, s in enumerate(out)])
            own = OwnEdges(sources, inverse, w, carry, out[rank], cuts[rank])
            blocks, staged = route_rows(self.comm, name, [Block(head.take(s), *x) for s, x in zip(out, rows)],
                                        [h.take(g) for h, g in zip(incoming, got)])
            self.staged_bytes += staged
            del rows  # sent
            held = result.held if merging is None else merging.sums()
            for r, (blk, g) in enumerate(zip(blocks, got)):  # canonical: source rank 0, 1, ...
                if r == rank:
                    own.add(held, local_of[r])
                elif g.stop > g.start:
                    add_partials(held, local_of[r][g], blk.head, blk.rows, blk.lone)
            if merging is not None:
                merging.piece(k, held, self.pop.replace)
        self.traffic.recv(np.flatnonzero(messages), self.model_bytes, messages[messages > 0])
        result.links = self._links(src, dst, uniq, [rows_of if r != rank else None for r, rows_of in enumerate(local_of)])
        return result

    def _merging(self, step: Mix, src, dst, sources: Sources, carry, local, carry_in, pieces: Pieces,
                 result: MixResult) -> Merging:
        """Mix.merge piece by piece: the fresh edges src -> dst (carrying `carry`) read their senders'
        rows in the rows table at their receiver's piece, unless they carry another row."""
        lo, n_local = self.world.slot_lo, self.world.n_local
        reads = np.flatnonzero((carry != NO_ROW) & ~sources.lying[:len(src)]) if step.rows is None else src[:0]
        by_piece = self.sum_buffers.by_piece(step.purpose, local, carry_in, pieces.of[local + lo], pieces.count,
                                             n_local, self.pop.n_params, self.pop.rows.device)
        return Merging(np.asarray(step.merge, dtype=np.float64), by_piece, result, pieces.of[lo:lo + n_local],
                       (src[reads], pieces.of[dst[reads]]), self.sum_buffers, (step.purpose, "aside"), self.pop.rows)

    def _route(self, step: str, outgoing: list[Block]) -> list[Block]:
        incoming, staged = route(self.comm, step, outgoing)
        self.staged_bytes += staged
        return incoming

    def _mix_rows(self, step: Mix, src, dst, w, vals, real, sources: Sources, key: np.ndarray,
                  keeps: np.ndarray) -> MixResult:
        """A Mix under a robust rule, or one with arrival keys: every delivered row travels to its
        receiver's rank (no partial sums), where each receiver combines its rows by the rule or
        keeps them one by one. Rows are put in (receiver, key, sender) order first, so the
        result does not depend on the rank count."""
        world, rank, lo = self.world, self.world.rank, self.world.slot_lo
        order = np.lexsort((src, dst))  # edges by receiver: the owners' blocks are contiguous
        src, dst, w, vals, real, key = src[order], dst[order], w[order], vals[order], real[order], key[order]
        narrow, kept = sources.narrow, keeps[dst]  # then every row crosses as float32, widened on arrival
        head = Header(dst=dst, src=src + lo, weight=w, real=real, key=key, values=vals,
                      carry=np.where(kept, NARROW if narrow else WIDE, NO_ROW))
        cuts, dtype = self._by_owner(dst), torch.float32 if narrow else torch.float64
        incoming = self._route(f"mix-{step.purpose}", [Block.carrying(head.take(slice(a, b)), sources.gather(
            order[a:b][kept[a:b]], dtype)) for a, b in zip(cuts, cuts[1:])])
        heads = Header.of(head.layout, np.concatenate([blk.head.data for blk in incoming]))
        canon = np.lexsort((heads["src"], heads["key"], heads["dst"]))  # (receiver, key, sender)
        has = heads["carry"][canon] != NO_ROW  # the edges whose rows arrived, the rows in header order
        rows = torch.cat([blk.widened() for blk in incoming])[torch.as_tensor(
            (np.cumsum(heads["carry"] != NO_ROW) - 1)[canon][has], device=self.pop.rows.device)]
        heads = heads.take(canon)
        local, n = heads.ids("dst") - lo, world.n_local
        edge_w, edge_real, edge_values = heads["weight"], heads.ids("real"), heads["values"] * heads["weight"][:, None]
        weights, counts, messages, values = tally(n, local, edge_w, 1, edge_real, edge_values)
        self.traffic.recv(np.flatnonzero(messages), self.model_bytes, messages[messages > 0])
        sender_rank = world.owner(heads.ids("src"))
        links = self._links(src, dst, np.unique(dst), [np.unique(local[sender_rank == r]) if r != rank else None
                                                       for r in range(world.size)])
        local, edge_w, edge_real, edge_values = local[has], edge_w[has], edge_real[has], edge_values[has]
        nodes, group = np.unique(local, return_inverse=True)
        if step.order is not None:  # kept one by one; place = index among the receiver's edges
            place = np.arange(len(local)) - np.searchsorted(local, local)
            return MixResult(n, nodes, counts, messages, weights, values, links=links,
                             terms=(rows, np.arange(len(local)), group, edge_w),
                             arrivals=(place, local, edge_real, edge_values))
        combined = aggregate(step.rule.name, rows, group, len(nodes), beta=step.rule.beta, clip_tau=step.rule.clip_tau)
        sums = combined * torch.as_tensor(weights[nodes], dtype=combined.dtype, device=combined.device)[:, None]
        return MixResult(n, nodes, counts, messages, weights, values, held=Held.of(sums, nodes, n), links=links)

    def _reply(self, step: Reply, ctx: RoundContext) -> MixResult:
        """Answer along `step.to`'s delivered edges: one collective step, each answering row sent once per rank."""
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

        def answers(nodes):  # the answers of these local rows, by global id
            return Block(Header(node=nodes + lo), table[torch.as_tensor(step.rows.pos[nodes], device=table.device)])

        # to every rank that reached us, the answers of the nodes it reached; to ourselves, every answer
        heard = to.links.heard_from
        incoming = self._route(f"reply-{step.purpose}", [
            answers(ans) if r == rank else answers(heard[r][answering[heard[r]]]) for r in range(size)])
        ids = np.concatenate([blk.head.ids("node") for blk in incoming])
        order = np.argsort(ids, kind="stable")
        ids, table = ids[order], torch.cat([blk.rows for blk in incoming])[torch.as_tensor(order, device=table.device)]

        src, dst = to.links.edges  # the edges this rank's nodes sent: now answered dst -> src
        j = np.minimum(np.searchsorted(ids, dst), max(len(ids) - 1, 0))
        has = ids[j] == dst if len(ids) else np.zeros(len(dst), bool)  # j is clipped into range above
        ok = has & self.channel.delivered(step.purpose, dst, src + lo, ctx.rnd)
        if self.clock is not None:  # the answers that left: the answering node's uplink sends each
            sent = has & (src + lo != dst)
            self.clock.transfer(f"reply-{step.purpose}", dst[sent], src[sent] + lo, ok[sent], self.model_bytes, False)
        src, j, real = src[ok], j[ok], (src + lo != dst)[ok]
        n = world.n_local
        nodes = np.unique(src)
        counts = np.bincount(src, minlength=n).astype(np.int64)
        messages = np.bincount(src[real], minlength=n).astype(np.int64)
        self.traffic.recv(np.flatnonzero(messages), self.model_bytes, messages[messages > 0])
        return MixResult(n, nodes, counts, messages, counts.astype(np.float64),
                         terms=(table, j, np.searchsorted(nodes, src), None))

    def _exchange(self, step: Exchange, ctx: RoundContext) -> HeardEdges:
        """Scalars along edges: every delivered edge reaches its receiver with its sender and values."""
        lo, n = self.world.slot_lo, self.world.n_local
        src = np.asarray(step.src, dtype=np.int64)
        dst = np.asarray(step.dst, dtype=np.int64)
        vals = edge_values(step.values, len(dst))
        size = HEADER_BYTES + ID_BYTES * vals.shape[1]
        real = src + lo != dst
        self.control.send(src[real], size)
        ok = self.channel.delivered(step.purpose, src + lo, dst, ctx.rnd)
        if self.clock is not None:
            self.clock.transfer(f"exchange-{step.purpose}", src[real] + lo, dst[real], ok[real], size, True)
        src, dst, vals = src[ok], dst[ok], vals[ok]
        order = np.argsort(self.world.owner(dst), kind="stable")
        head = Header(dst=dst[order], src=src[order] + lo, values=vals[order])
        cuts = self._by_owner(dst[order])
        incoming = self._route(f"exchange-{step.purpose}", [Block(head.take(slice(cuts[r], cuts[r + 1])))
                                                            for r in range(self.world.size)])
        heads = Header.of(head.layout, np.concatenate([blk.head.data for blk in incoming]))
        receiver, sender = heads.ids("dst") - lo, heads.ids("src")
        got = receiver + lo != sender
        self.control.recv(receiver[got], size)
        return HeardEdges(n, receiver, sender, heads["values"])

    def _snapshot(self, step: Snapshot, ctx: RoundContext) -> HeldRows:
        idx = np.flatnonzero(np.asarray(step.nodes, dtype=bool))
        return HeldRows(idx, self.pop.rows[torch.as_tensor(idx, device=self.pop.rows.device)].clone())

    def _assign(self, step: Assign, ctx: RoundContext | None = None) -> None:
        """New rows for step.nodes: their means of step.result (engine/merging.py)."""
        own_weight = None if step.own_weight is None else np.asarray(step.own_weight, dtype=np.float64)
        assign_means(step.result, np.asarray(step.nodes, dtype=np.int64), own_weight, self.pop.rows, self.pop.replace,
                     step.rule)
