#!/usr/bin/env python3
"""How the data were split over the nodes: the label skew of each experiment's partition.

    python analysis/partition.py results/*.h5 --out figures [--smoke]

Reads `/partition/labels` ([N, K] training samples per node and class) of the first run of
each group (the partition depends on the seed, the data and the node count only). One
figure per distinct partition: a stacked bar per node, sorted by its largest class, of the
share of each class in its samples, and below it the node's sample count. A table gives per
partition the nodes, samples per node (min, median, max), and the label skew: the mean share
of a node's largest class, and the mean number of classes that hold 90 % of a node's samples.

Writes partition_<name>.png per partition and partition.md, partition.csv.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common


def labels_of(run) -> np.ndarray | None:
    """[N, K] samples per node and class, or None (an overlay-only run, a file from before the record)."""
    with common.open_h5(run.path) as f:
        table = f["partition/labels"][()] if "partition/labels" in f else None
    return table if table is not None and table.size and table.sum() > 0 else None


def describe(config: dict) -> str:
    """"fashion-mnist, Dirichlet α = 0.5, 50 nodes (seed 1)"."""
    data = config.get("data", {})
    part = data.get("partition", "iid")
    skew = {"dirichlet": f"Dirichlet α = {data.get('alpha', 0.5):g}",
            "shards": f"shards, {data.get('shards_per_node', 2)} a node"}.get(part, "IID")
    return f"{data.get('dataset', 'synthetic')}, {skew}, {config.get('nodes', {}).get('count', '?')} nodes " \
           f"(seed {config.get('run', {}).get('seed', '?')})"


def skew(table: np.ndarray) -> dict:
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    ordered = -np.sort(-share, axis=1)
    ninety = (np.cumsum(ordered, axis=1) < 0.9).sum(axis=1) + 1
    sizes = table.sum(axis=1)
    return {"nodes": len(table), "classes": table.shape[1], "samples_min": int(sizes.min()),
            "samples_median": float(np.median(sizes)), "samples_max": int(sizes.max()),
            "top_class_share": float(ordered[:, 0].mean()), "classes_for_90pct": float(ninety.mean())}


def plot(name: str, table: np.ndarray, path: Path, smoke: bool) -> Path:
    plt = common.pyplot()
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    order = np.lexsort((-share.max(axis=1), share.argmax(axis=1)))  # nodes grouped by their main class
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x, base = np.arange(len(table)), np.zeros(len(table))
    cmap = plt.get_cmap("tab10" if table.shape[1] <= 10 else "tab20")
    for k in range(table.shape[1]):
        top.bar(x, share[order, k], bottom=base, width=1.0, color=cmap(k % cmap.N), label=f"class {k}", lw=0)
        base += share[order, k]
    top.set_ylabel("share of the node's samples")
    top.set_ylim(0, 1)
    top.set_title(f"Label skew: {name}", fontsize=10)
    common.legend_outside(top)
    bottom.bar(x, table.sum(axis=1)[order], width=1.0, color="0.4", lw=0)
    bottom.set_ylabel("samples")
    bottom.set_xlabel("node (sorted by its largest class)")
    bottom.set_xlim(-0.5, len(table) - 0.5)
    fig.tight_layout()
    return common.save(fig, path, smoke)


def write(groups: list[common.Group], out: Path, smoke: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    seen, paths, rows = set(), [], []
    for g in groups:
        name = describe(g.runs[0].config)
        if name in seen:
            continue
        table = labels_of(g.runs[0])
        if table is None:
            continue
        seen.add(name)
        paths.append(plot(name, table, out / f"partition_{common.slug(name)}.png", smoke))
        rows.append({"partition": name, **skew(table)})
    if not rows:
        return paths
    body = [[r["partition"], r["nodes"], f"{r['samples_min']} / {r['samples_median']:g} / {r['samples_max']}",
             f"{100 * r['top_class_share']:.0f} %", f"{r['classes_for_90pct']:.1f} of {r['classes']}"] for r in rows]
    md = out / "partition.md"
    md.write_text("# Data partition\n\n" + common.markdown_table(
        ["partition", "nodes", "samples per node (min / median / max)", "largest class of a node (mean share)",
         "classes holding 90 % of a node's samples (mean)"], body) +
        "\nFrom /partition/labels of each experiment's first run. IID: the largest class holds about 1/K of "
        "a node's samples; strong skew: close to 100 %.\n")
    return paths + [md, common.write_csv(out / "partition.csv", rows)]


def main(argv=None) -> int:
    return common.files_out_main(write, __doc__, argv)


if __name__ == "__main__":
    common.run_main(main)
