"""Hub-based learning: HEAL, FedAvg and Gaia are one protocol with different hub lists.

One round (HEAL paper §4.4; FedAvg = one static hub, Gaia = k static hubs):
  1. every live non-hub trains on its own data;
  2. it sends its model to `s` hubs drawn from its hub list;
  3. every hub averages the client models it received (uniform, its own excluded);
  4. hubs average their averages over their own hub lists (uniform over hubs);
  5. every hub returns the result to the clients that sent to it; a client averages the
     copies it got back, or keeps its own model when none came (all its hubs dead).
A hub that received no client model does not join step 4. Hubs do not train.
Which nodes are hubs and what hub lists they hold is the overlay's business.
"""

from __future__ import annotations

import numpy as np
import torch

from heal_mpi.context import RoundContext
from heal_mpi.protocols.base import Protocol, RoundTraffic, pick_from_lists


class HubProtocol(Protocol):
    """HEAL on Elevator, FedAvg on a star, Gaia on a multi-star."""

    def round(self, ctx: RoundContext, overlay) -> RoundTraffic:
        world, pop = self.world, self.pop
        local = world.local_slots
        alive = ctx.alive[local]
        hubs = overlay.is_hub() & alive  # bool [n_local]
        clients = alive & ~hubs
        traffic = RoundTraffic.zeros(world.n_local, self.model_bytes)

        # 1. local training
        traffic.train_loss = pop.train(clients, ctx.rnd, ctx.incarnation[local])

        # 2. clients -> s hubs of their hub list
        targets = pick_from_lists(overlay.hub_lists(), clients, self.cfg.protocol.fanout, ctx,
                                  "hub-target", local)  # [n_local, s], -1 = none
        src, dst = np.nonzero(targets >= 0)[0], targets[targets >= 0]
        traffic.send(src, model=True)
        delivered = self.delivered(ctx, local[src], dst, "up")
        up = self.comm.mix(pop.rows, src[delivered], dst[delivered])
        served = hubs & (up.counts > 0)  # hubs that take part in this round
        traffic.recv(np.nonzero(served)[0], up.counts[served], model=True)

        # 3.-4. hub averages, then the average of the hub averages over each hub's hub list
        local_avg = torch.zeros_like(pop.rows)  # [n_local, P]
        local_avg[self.on_device(served)] = up.mean_rows(served)
        peers = overlay.hub_lists()  # [n_local, h]
        h_src, h_col = np.nonzero((peers >= 0) & served[:, None])
        h_dst = peers[h_src, h_col]
        remote = h_dst != local[h_src]
        traffic.send(h_src[remote], model=True)
        ok = ~remote | self.delivered(ctx, local[h_src], h_dst, "hub-hub")
        between = self.comm.mix(local_avg, h_src[ok], h_dst[ok])
        got = served & (between.counts > 0)
        traffic.recv(np.nonzero(got)[0], between.counts[got] - 1, model=True)  # own average is no message
        global_rows = torch.zeros_like(pop.rows)
        global_rows[self.on_device(got)] = between.mean_rows(got)

        # 5. hubs -> the clients that reached them; hubs keep the global model themselves
        traffic.send(np.nonzero(got)[0], up.counts[got], model=True)
        new_rows, n_copies = self.fetch_from(global_rows, got, ctx, local[src[delivered]], dst[delivered], traffic)
        pop.replace(np.nonzero(got)[0], global_rows[self.on_device(got)])
        receivers = np.nonzero(n_copies > 0)[0]
        pop.replace(receivers, new_rows[self.on_device(receivers)])
        traffic.hubs_active = int(got.sum())
        return traffic

    def fetch_from(self, global_rows, ready, ctx, clients, hubs_asked, traffic):
        """Each client gets the global model back from each hub it reached (if that hub has one).

        Collective over `world.comm`: every rank must call. Returns float32 [n_local, P], the
        average of the copies each local client received, and int64 [n_local], how many.
        """
        world, pop = self.world, self.pop
        # one request per (hub, rank): the copies for several clients of a rank travel once
        uniq, inverse = np.unique(hubs_asked, return_inverse=True)
        p = pop.rows.shape[1]

        def serve(hub_local, _payload):
            rows = global_rows[torch.as_tensor(hub_local, device=global_rows.device)].cpu().numpy()  # [m, P]
            return np.concatenate([ready[hub_local, None].astype(np.float32), rows], axis=1)

        reply = self.comm.request(uniq, np.zeros((len(uniq), 1), np.int64), serve)  # [u, 1 + P]
        has = reply[inverse, 0] > 0  # the hub had a global model for this client
        client_local = clients - world.slot_lo
        back = has & self.delivered(ctx, hubs_asked, clients, "down")
        sums = torch.zeros((world.n_local, p), dtype=torch.float64, device=pop.rows.device)
        idx = torch.as_tensor(client_local[back], device=sums.device)
        sums.index_add_(0, idx, torch.as_tensor(reply[inverse[back], 1:], device=sums.device).double())
        copies = np.bincount(client_local[back], minlength=world.n_local)
        traffic.recv(np.nonzero(copies)[0], copies[copies > 0], model=True)
        denom = torch.as_tensor(np.maximum(copies, 1), dtype=torch.float64, device=sums.device)
        return (sums / denom[:, None]).to(torch.float32), copies
