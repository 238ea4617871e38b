"""One round's metrics: per-node arrays for /nodes and world-reduced scalars for /rounds.

Scalars are reduced as (sum, count) pairs packed in one float64 vector, with one Allreduce;
means are taken afterwards, so they do not depend on how nodes are spread over ranks.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from heal_mpi.context import RoundContext
from heal_mpi.protocols import RoundTraffic


def _sum_count(x: np.ndarray) -> list[float]:
    return [float(np.nansum(x)), float(np.count_nonzero(~np.isnan(x)))]


def round_metrics(comm: MPI.Comm, ctx: RoundContext, local: slice, traffic: RoundTraffic, overlay,
                  acc: np.ndarray, loss: np.ndarray, distinct: int, mpi_bytes: int,
                  learning: bool = True) -> tuple[dict, dict]:
    """(/rounds scalars, /nodes [n_local] arrays). Collective over `comm`: every rank must call.

    Without learning (protocol.kind = "none") the model metrics, all NaN or 0, are left out.
    """
    vec = np.array(
        _sum_count(acc) + [float(np.nansum(acc ** 2))] + _sum_count(loss) + _sum_count(traffic.train_loss)
        + [traffic.msgs_sent.sum(), traffic.bytes_sent.sum(), overlay.msgs_sent.sum(), overlay.bytes_sent.sum(),
           mpi_bytes, traffic.hubs_active, distinct, traffic.train_samples], dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, vec)
    (acc_sum, acc_n, acc_sq, loss_sum, loss_n, tl_sum, tl_n,
     model_msgs, model_bytes, ov_msgs, ov_bytes, mpi_total, hubs_active, evaluated, samples) = vec
    acc_mean = acc_sum / acc_n if acc_n else np.nan
    rounds = {
        "alive": ctx.n_alive,
        "acc_mean": acc_mean,
        "acc_std": np.sqrt(max(acc_sq / acc_n - acc_mean ** 2, 0.0)) if acc_n else np.nan,
        "loss_mean": loss_sum / loss_n if loss_n else np.nan,
        "train_loss_mean": tl_sum / tl_n if tl_n else np.nan,
        "messages": model_msgs + ov_msgs, "bytes": model_bytes + ov_bytes,
        "model_messages": model_msgs, "model_bytes": model_bytes,
        "overlay_messages": ov_msgs, "overlay_bytes": ov_bytes,
        "mpi_bytes": mpi_total, "hubs_active": hubs_active, "evaluated_models": evaluated,
        "train_samples": samples,
    }
    nodes = {
        "acc": acc.astype(np.float32), "loss": loss.astype(np.float32),
        "alive": ctx.alive[local].astype(np.int8), "incarnation": ctx.incarnation[local].astype(np.int32),
        "msgs_sent": (traffic.msgs_sent + overlay.msgs_sent).astype(np.int32),
        "msgs_recv": (traffic.msgs_recv + overlay.msgs_recv).astype(np.int32),
        "bytes_sent": traffic.bytes_sent + overlay.bytes_sent,
        "bytes_recv": traffic.bytes_recv + overlay.bytes_recv,
    }
    if not learning:
        for key in ("acc_mean", "acc_std", "loss_mean", "train_loss_mean", "model_messages", "model_bytes",
                    "hubs_active", "evaluated_models", "train_samples"):
            del rounds[key]
        del nodes["acc"], nodes["loss"]
    return rounds, nodes
