"""Simulated time (`[time]`): each node's device and access link, and the timeline of a round.

Off by default; then nothing here runs and every result is as without it. On, the models do
not change (every step waits for all its inputs): only the clock is added.

A simulated second is the unit of the speeds in `[time]`: a node that computes 600
sample-gradients at `compute = 1000` per second is busy 0.6 s; a 240 KiB model over a 1 MB/s
uplink takes 0.25 s. Give the speeds of the devices you model, or speeds relative to one
reference device (compute = 1 means "one reference device's rate"), and read the seconds in that unit.

Devices: per node, drawn once from the seed (keyed by the node's id, so the same on any rank
count): compute (sample-gradients per second), uplink and downlink (bytes per second), latency
(seconds), each `constant`, `uniform` or `lognormal` around its value; a fraction of slow nodes;
or a CSV file with one row per node.

The timeline of a round (times in seconds from the round's start, per node):
- the overlay's cycle: its request/reply exchanges (Elevator 2, Newscast 1, a static overlay 0)
  take 4 latencies each (two messages, two access links each), plus the overlay bytes the node
  sent over its uplink and received over its downlink;
- Train: samples seen / compute;
- a message step (a Mix, Reply or Exchange) of B bytes per edge s -> d: each sender's uplink
  sends its edges one after another, in receiver order, once the sender is ready (edge j leaves
  at ready + j B / up, and is uploaded B / up later); each receiver's downlink takes the edges
  that reach it (at leave + latency of s + latency of d) one after another, B / down each from
  the later of its arrival and the previous edge's end. An edge is in when both are done, so a
  single edge takes latency + B / min(up, down), k clients sending to one hub k B / down, and one
  hub answering k clients k B / up. A receiver is ready when every edge that reached it is in, a
  sender when its uploads are done; a lost message occupies the uplink and never arrives.
- the round ends when the last live node is ready: that is the round's simulated duration, and
  the next round starts then for every node (wait for all). A node's idle time is the duration
  less its busy time (training, uploading, downloading, the overlay).

The sums run in float64 in a canonical order (senders by id, receivers by arrival then sender),
so the clock is identical on any rank count.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heal_mpi.errors import ConfigError
from heal_mpi.rng import uniform
from heal_mpi.timers import Timers

CSV_COLUMNS = ("node", "compute", "uplink", "downlink", "latency")
DROPPED, NEXT = -1, -2  # what transfer's `due` says of a late model: dropped; applied in the next round


@dataclass(frozen=True)
class Devices:
    """Every node's device and link, the same arrays on every rank (float64 [N] each)."""

    compute: np.ndarray   # sample-gradients per second
    uplink: np.ndarray    # bytes per second
    downlink: np.ndarray  # bytes per second
    latency: np.ndarray   # seconds, one access link

    @classmethod
    def from_config(cls, tc, n: int, seed: int) -> "Devices":
        """Draw them from [time] (`tc`), or read `tc.devices_csv`."""
        if tc.devices_csv:
            return cls(*read_csv(Path(tc.devices_csv), n))
        scale = _draw(seed, "time-bandwidth", n, tc.bandwidth_dist, tc.bandwidth_spread)  # one draw: up and down
        compute = tc.compute * _draw(seed, "time-compute", n, tc.compute_dist, tc.compute_spread)
        uplink, downlink = tc.uplink * scale, tc.downlink * scale
        latency = tc.latency * _draw(seed, "time-latency", n, tc.latency_dist, tc.latency_spread)
        slow = slow_nodes(seed, n, tc.slow_fraction)
        for speed in (compute, uplink, downlink):
            speed[slow] /= tc.slow_factor
        return cls(compute, uplink, downlink, latency)


def _draw(seed: int, purpose: str, n: int, dist: str, spread: float) -> np.ndarray:
    """float64 [n]: each node's factor, 1 for constant (or no spread)."""
    ids = np.arange(n)
    if dist == "constant" or spread == 0:
        return np.ones(n)
    if dist == "uniform":
        return 1.0 - spread + 2.0 * spread * uniform(seed, purpose, ids)
    u1, u2 = uniform(seed, purpose + "-r", ids), uniform(seed, purpose + "-angle", ids)  # Box-Muller
    return np.exp(spread * np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2))


def slow_nodes(seed: int, n: int, fraction: float) -> np.ndarray:
    """The round(fraction × n) slow nodes, drawn from the seed (sorted ids)."""
    k = int(round(fraction * n))
    return np.sort(np.argsort(uniform(seed, "time-slow", np.arange(n)), kind="stable")[:k])


def read_numbers(path: Path, key: str, columns: tuple[str, ...]) -> np.ndarray:
    """float64 [rows, len(columns)] of a CSV file whose header row names `columns`; errors name `key`."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path} ({e.strerror or e})") from None
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    if header != list(columns):
        raise ConfigError(f"{key}: {path}: the header must be {','.join(columns)}, got "
                          f"{','.join(header) or 'an empty file'}")
    try:
        return np.array([[float(x) for x in line.split(",")] for line in lines[1:] if line.strip()]).reshape(
            -1, len(columns))
    except ValueError as e:
        raise ConfigError(f"{key}: {path}: {e}") from None


def read_csv(path: Path, n: int) -> tuple[np.ndarray, ...]:
    """(compute, uplink, downlink, latency) from a CSV file with a header row and one row per node."""
    table = read_numbers(path, "time.devices_csv", CSV_COLUMNS)
    if table.shape != (n, len(CSV_COLUMNS)) or not np.array_equal(np.sort(table[:, 0]), np.arange(n)):
        raise ConfigError(f"time.devices_csv: {path}: expected one row for each node 0..{n - 1}, got "
                          f"{len(table)} rows")
    table = table[np.argsort(table[:, 0])]
    if (table[:, 1:4] <= 0).any() or (table[:, 4] < 0).any() or not np.isfinite(table).all():
        raise ConfigError(f"time.devices_csv: {path}: compute and bandwidths must be > 0, latency >= 0")
    return tuple(table[:, i].copy() for i in range(1, 5))


class Clock:
    """This rank's nodes' simulated time within the round, and the run's time. Collective where noted.

    Attributes:
        ready: float64 [n_local], when each local node has done what the round asked so far.
        busy: float64 [n_local], its busy seconds this round.
        time: the simulated time at the start of the round (seconds since the run began).
        duration: the last round's simulated seconds.
    """

    def __init__(self, world, comm, devices: Devices, overlay_exchanges: int, deadline: float = 0.0,
                 quorum: float = 1.0, late: str = "drop", staleness: float = 0.5):
        self.world, self.comm, self.devices, self.exchanges = world, comm, devices, overlay_exchanges
        self.deadline, self.quorum, self.late_policy, self.staleness = deadline, quorum, late, staleness
        self.ready, self.busy = np.zeros(world.n_local), np.zeros(world.n_local)
        self.time, self.duration = 0.0, 0.0
        self.late = 0  # rows this rank's aggregators dropped this round
        self.timers: Timers | None = None  # asynchronous rounds (start_timers)
        self.availability = None  # heal_mpi.availability.Availability, set by the Simulation
        self.online = np.ones(world.n_nodes, dtype=bool)  # as of the last round
        self.acting = np.zeros(world.n_local, dtype=bool)

    @property
    def waits(self) -> bool:
        """Whether aggregators stop waiting, at a deadline or a quorum."""
        return self.deadline > 0 or self.quorum < 1

    def start_timers(self, samples: np.ndarray, model_bytes: int, tc, seed: int) -> None:
        """Asynchronous rounds of tc.slice seconds (heal_mpi/timers.py): each node's period from the
        `samples` float [n_local] of one local training of its own. Collective."""
        everyone = np.zeros(self.world.n_nodes)
        everyone[self.world.slot_lo:self.world.slot_hi] = samples
        samples = self.comm.allreduce_sum(everyone, "clock-timers", counted=False)  # set-up, not a round's traffic
        d = self.devices
        self.timers = Timers(samples / d.compute + model_bytes / d.uplink + model_bytes / d.downlink + 2.0 * d.latency,
                             tc.slice, tc.jitter, seed)

    def start_round(self, ctx):
        """ctx with this round's availability (offline nodes not live, those back online in `joined`
        and `returned`) and, under asynchronous rounds, the nodes whose timer fires."""
        if self.availability is not None:
            on = self.availability.online(self.time)
            back = np.setdiff1d(np.flatnonzero(ctx.alive & on & ~self.online), ctx.joined)
            self.online = on
            ctx = dataclasses.replace(ctx, alive=ctx.alive & on, joined=np.union1d(ctx.joined, back), returned=back)
        if self.timers is None:
            return ctx
        acting, self._offset = self.timers.fire(self.time, ctx.alive, ctx.rnd)
        self.acting = self._local(acting)
        return dataclasses.replace(ctx, acting=acting)

    @classmethod
    def from_config(cls, cfg, world, comm, overlay_exchanges: int) -> "Clock | None":
        if not cfg.time.enabled:
            return None
        tc = cfg.time
        return cls(world, comm, Devices.from_config(tc, cfg.nodes.count, cfg.run.seed), overlay_exchanges,
                   tc.deadline, tc.quorum, tc.late, tc.staleness)

    def _local(self, values: np.ndarray) -> np.ndarray:
        return values[self.world.slot_lo:self.world.slot_hi]

    # ------------------------------------------------------------------ the round's steps
    def overlay(self, traffic) -> None:
        """The round starts with the overlay's cycle (its bytes counted in `traffic`); under
        asynchronous rounds it runs in the background, and a node starts when its timer fires."""
        d = self.devices
        spent = (4.0 * self.exchanges * self._local(d.latency) + traffic.bytes_sent / self._local(d.uplink)
                 + traffic.bytes_recv / self._local(d.downlink))
        self.ready = self._local(self._offset).copy() if self.timers is not None else spent.copy()
        self.busy = spent.copy()
        self.late = 0

    def train(self, samples: np.ndarray) -> None:
        """Local training: `samples` float [n_local] sample-gradients per node (0 where none)."""
        spent = samples / self._local(self.devices.compute)
        self.ready += spent
        self.busy += spent

    def transfer(self, step: str, src: np.ndarray, dst: np.ndarray, delivered: np.ndarray, nbytes: int,
                 at_sender: bool, wait: bool = False, flights: bool = False):
        """One message step: edges src -> dst (global ids, self-edges left out), `delivered` bool, of
        `nbytes` each; the edges are known on the sender's rank (`at_sender`) or on the receiver's.
        Collective: two exchanges (one when the edges are at their senders). A third, and a result,
        when some edges may not be taken this round: the receivers `wait` (aggregators) under a
        deadline or a quorum, or the rounds are asynchronous slices and the edges' rows can stay in
        `flights` (a Mix's, at their senders) until a later round. Then
        it returns (due int64 [E]: 0 taken now, DROPPED by its receiver, NEXT: late, applied in the
        next round's step, k >= 1 arriving k rounds later; heard: per rank, the local rows that an
        edge from that rank reached now, late ones included, None for this rank), else None."""
        world, d = self.world, self.devices
        src_sent = src
        aggregating = wait and self.waits
        flights = flights and self.timers is not None
        wait = aggregating or flights
        if wait and not at_sender:
            raise ValueError(f"{step}: only receivers of edges known at their senders can wait")
        start = self.ready.copy()  # a receiver's deadline counts from when it is ready for the step
        edges = np.stack([src, dst, delivered, np.arange(len(src))], axis=1).astype(np.int64)
        if not at_sender:  # first to the senders' ranks, whose uplinks they use
            edges = np.concatenate(self.comm.exchange(self._by_owner(edges, edges[:, 0]), f"clock-up-{step}"))
        order = np.lexsort((edges[:, 1], edges[:, 0]))
        src, dst, ok, index = edges[order].T
        first = np.searchsorted(src, src)  # each edge's place in its sender's queue
        per = nbytes / d.uplink[src]
        leave = self.ready[src - world.slot_lo] + (np.arange(len(src)) - first) * per
        uploaded = leave + per
        spent = np.bincount(src - world.slot_lo, per, world.n_local)
        self.busy += spent
        np.maximum.at(self.ready, src - world.slot_lo, uploaded)

        lat = d.latency[src] + d.latency[dst]
        # lost edges too when the receivers wait for a quorum (they count what was sent to them);
        # ids as float64: exact below 2**53
        sent = np.stack([dst, src, leave + lat, uploaded + lat, ok, index], axis=1)
        sent = sent if aggregating else sent[ok > 0]
        got = np.concatenate(self.comm.exchange(self._by_owner(sent, sent[:, 0].astype(np.int64)), f"clock-{step}"))
        arrived = got[:, 4] > 0
        dst, src = got[:, 0].astype(np.int64) - world.slot_lo, got[:, 1].astype(np.int64)
        expected = np.bincount(dst, minlength=world.n_local) if aggregating else None
        got, dst, src = got[arrived], dst[arrived], src[arrived]
        due = self._receive(dst, src, got[:, 2], got[:, 3], nbytes, start, expected, flights)
        if not wait:
            return None
        self.late += int((due < 0).sum())
        if self.late_policy == "next":
            due[due == DROPPED] = NEXT
        # to the senders: each edge not taken now, with when its receiver went on without it
        back = np.stack([src, got[:, 5], due, self.ready[dst]], axis=1)[due != 0]
        back = np.concatenate(self.comm.exchange(self._by_owner(back, back[:, 0].astype(np.int64)),
                                                 f"clock-due-{step}"))
        at = back[:, 1].astype(np.int64)
        due_at_sender, went_on = np.zeros(len(delivered), dtype=np.int64), np.zeros(len(delivered))
        due_at_sender[at], went_on[at] = back[:, 2].astype(np.int64), back[:, 3]
        if aggregating:
            self._give_up(np.asarray(src_sent), np.asarray(delivered, dtype=bool), due_at_sender, went_on, dst)
        sender_rank = world.owner(src)
        heard = [np.unique(dst[(sender_rank == r) & (due <= 0)]) if r != world.rank else None
                 for r in range(world.size)]
        return due_at_sender, heard

    def _give_up(self, src, delivered, due, went_on, receivers) -> None:
        """Senders (global ids, edges in the step's order) whose every delivered row was late abandon
        their update: they are done when the last of their receivers went on without them, and wait
        for the answer from there (a node that also receives in this step goes on with it)."""
        late = delivered & (due < 0)
        if not late.any():
            return
        lo = self.world.slot_lo
        quit = np.setdiff1d(np.unique(src[late]), src[delivered & (due >= 0)]) - lo
        quit = quit[~np.isin(quit, receivers)]
        stop = np.zeros(self.world.n_local)
        np.maximum.at(stop, src[late] - lo, went_on[late])
        self.ready[quit] = stop[quit]
        self.busy[quit] = np.minimum(self.busy[quit], stop[quit])

    def _receive(self, dst, src, arrive, uploaded, nbytes: int, start, expected, flights: bool) -> np.ndarray:
        """Each receiver's downlink takes its edges (dst local rows) one after another, in order of
        arrival. With `expected` (edges sent to each local node) the receivers wait only for the
        quorum and until the deadline; in asynchronous rounds an edge done after the slice arrives
        in a later round. Returns due: int64 per edge, 0 taken now, DROPPED, k arriving k rounds later."""
        due = np.zeros(len(dst), dtype=np.int64)
        if len(dst) == 0:
            return due
        order = np.lexsort((src, arrive, dst))
        dst, src, arrive, uploaded = dst[order], src[order], arrive[order], uploaded[order]
        per = nbytes / self._local(self.devices.downlink)[dst]
        starts = np.flatnonzero(np.r_[True, dst[1:] != dst[:-1]])
        sizes = np.diff(np.r_[starts, len(dst)])
        free = np.full(len(starts), -np.inf)  # when each receiver's downlink is free
        done = np.empty(len(dst))
        for k in range(int(sizes.max())):  # the k-th edge of every receiver that has one
            g = np.flatnonzero(sizes > k)
            i = starts[g] + k
            free[g] = np.maximum(free[g], arrive[i]) + per[i]
            done[i] = np.maximum(free[g], uploaded[i])
        keep = np.ones(len(dst), dtype=bool) if expected is None else self._in_time(dst, src, done, start, expected)
        later = np.zeros(len(dst), dtype=np.int64)
        if flights:  # in flight until a later slice (one done at its slice's end is in); timed now, never again
            later = np.maximum(np.ceil(done / self.timers.slice) - 1, 0).astype(np.int64)
            keep &= later == 0
        self.busy += np.bincount(dst[keep], per[keep], self.world.n_local)
        np.maximum.at(self.ready, dst[keep], done[keep])
        due[order] = np.where(keep, 0, np.where(later > 0, later, DROPPED))
        return due

    def _in_time(self, dst, src, done, start, expected) -> np.ndarray:
        """bool per edge (sorted by receiver): the first ceil(quorum × expected) rows to be done, those
        done before the receiver's deadline. A receiver that misses rows at its deadline is ready then."""
        by_done = np.lexsort((src, done, dst))
        place = np.empty(len(dst), dtype=np.int64)
        place[by_done] = np.arange(len(dst)) - np.searchsorted(dst, dst[by_done])
        keep = place < np.ceil(self.quorum * expected[dst] - 1e-9)  # 0.8 × 10 is 8.000000000000002
        if self.deadline > 0:
            cutoff = start[dst] + self.deadline
            missed = keep & (done > cutoff)
            keep &= ~missed
            np.maximum.at(self.ready, dst[missed], cutoff[missed])
        return keep

    def _by_owner(self, rows: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
        """rows split into one block per owning rank of `ids`."""
        order = np.argsort(self.world.owner(ids), kind="stable")
        cuts = np.searchsorted(self.world.owner(ids[order]), np.arange(self.world.size + 1))
        rows = rows[order]
        return [rows[cuts[r]:cuts[r + 1]] for r in range(self.world.size)]

    # ------------------------------------------------------------------ the round's end
    def end_round(self, alive_local: np.ndarray) -> None:
        """The round lasts until its last live node is ready (asynchronous rounds: one slice). Collective."""
        if self.timers is not None:
            self.duration = self.timers.slice
            return
        last = np.array([self.ready[alive_local].max() if alive_local.any() else 0.0])
        self.duration = float(self.comm.allreduce_max(last, "clock-end")[0])

    def contribute(self, metrics, alive_local: np.ndarray) -> None:
        """/rounds/sim_seconds, /rounds/sim_time, /nodes/finish_time, /nodes/idle_time; then the clock
        moves to the next round's start."""
        metrics.set("sim_seconds", self.duration)
        metrics.set("sim_time", self.time + self.duration)
        metrics.add_sum("late_dropped", self.late)
        if self.timers is not None:
            metrics.add_node("acted", self.acting.astype(np.int8))
        nan = np.float32(np.nan)
        metrics.add_node("finish_time", np.where(alive_local, self.ready, nan).astype(np.float32))
        metrics.add_node("idle_time", np.where(alive_local, self.duration - self.busy, nan).astype(np.float32))
        self.time += self.duration

    def state_dict(self) -> dict:
        return {"time": np.array([self.time]), "online": self.online.copy(),
                **(self.timers.state_dict() if self.timers is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        self.time = float(np.asarray(state["time"])[0])
        self.online = np.asarray(state.get("online", self.online), dtype=bool).copy()
        if self.timers is not None:
            self.timers.load_state_dict(state)
