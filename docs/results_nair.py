"""The result blocks of docs/nair.md, from the NAIR runs' CSVs (see docs/make_results.py)."""

from __future__ import annotations

import pandas as pd
from results_common import Runs, block, ms, num, pct, table

from devices import CATALOGUE

NAIR_METHODS = {
    "original": "original",
    "clio_mt": "CLIO multi-tail",
    "clio_st": "CLIO single tail",
    "nair_neither": "NAIR, neither (ablation)",
    "nair_penalty": "NAIR, penalty only",
    "nair": "**NAIR**",
    "raw_quant": "raw, quantised",
    "raw_jpeg": "raw, JPEG",
}


_budgets = lambda t: [c for c in t.columns if c.startswith("accuracy_at_")]
_budget_ms = lambda column: f"{1e3 * float(column.split('_')[2]):.0f} ms"


def _nair_table(t: pd.DataFrame, names: dict[str, str]) -> str:
    rows = [
        [names[r["method"]], *(pct(r[c]) for c in [*_budgets(t), "accuracy_overall"])]
        for _, r in t.iterrows()
        if r["method"] in names
    ]
    return table(["method", *map(_budget_ms, _budgets(t)), "overall"], rows)


@block("nair", "table2", "nair")
def nair_table2(runs: Runs) -> str:
    lat = runs.csv("nair", "latency.csv")
    orig = lat[lat.method == "original"]
    units = ", ".join(f"{u:g}" for u in orig.mean_units_received)
    budgets = ", ".join(f"{1e3 * b:.0f}" for b in orig.latency_budget_s)
    slice_bytes = (orig.mean_bytes_received / orig.mean_units_received).iloc[0]
    return (
        f"Each slice is {slice_bytes:.0f} bytes; the budgets {budgets} ms let {units} of the"
        f" {len(runs.csv('nair', 'importance.csv'))} slices arrive.\n\n"
        + _nair_table(runs.csv("nair", "table2.csv"), NAIR_METHODS)
    )


@block("nair", "figures", "nair")
def nair_figures(runs: Runs) -> str:
    t, imp, abl = (runs.csv("nair", f) for f in ("table2.csv", "importance.csv", "ablation.csv"))
    t, low = t.set_index("method"), _budgets(t)[0]
    o, c, r = (runs.csv("nair", "cost.csv").set_index("method").loc[m] for m in ("nair", "clio_mt", "raw_quant"))
    both = lambda col, fmt: " / ".join(fmt(t.loc[m, col]) for m in ("original", "nair"))
    shares = " / ".join(pct(imp[f"share_{m}"].max()) for m in ("original", "nair", "nair_penalty", "nair_neither"))
    m7_s = o.head_flops / CATALOGUE["cortex_m7_512kb"].flops_per_s
    rows = [
        ["original / NAIR at the smallest budget", both(low, pct), "16.0% / 91.5%"],
        ["overall accuracy, original / NAIR", both("accuracy_overall", pct), "93.79% / 93.95%"],
        [
            "tail parameters, NAIR / CLIO multi-tail",
            f"{num(o.tail_params)} / {num(c.tail_params)}"
            f" ({c.num_tails:.0f} tails): {o.tail_params / c.tail_params:.1%}",
            "3.1M / 36.2M: 8.6%",
        ],
        ["the top unit's share of importance: original / NAIR / penalty only / neither", shares, "9% / 21.6%"],
        [
            "table III, neither / penalty only / both: smallest budget; overall",
            "; ".join(" / ".join(pct(v) for v in abl[col]) for col in ("low_latency_accuracy", "overall_accuracy")),
            "77% / 89% / 91.5% at the lowest latency",
        ],
        [
            "the head on the device: FLOPs, time, energy",
            f"{num(o.head_flops)}, {ms(o.head_compute_s, 2)},"
            f" {1e3 * o.head_energy_j:.2f} mJ (on a Cortex-M7: {ms(m7_s)})",
            "",
        ],
        [
            "all slices (NAIR) / the raw image: link time, radio energy",
            f"{ms(o.transfer_s)}, {o.transfer_energy_j:.3f} J / {ms(r.transfer_s)}, {1e3 * r.transfer_energy_j:.1f} mJ",
            "",
        ],
    ]
    return table(["figure", "this run", "paper"], rows)


@block("nair", "corruption", "nair")
def nair_corruption(runs: Runs) -> str:
    cor = runs.csv("nair", "corruption.csv")
    c = cor.pivot_table(index="corruption_fraction", columns="split", values="accuracy")
    layers = cor.drop_duplicates("split").set_index("split").layer
    return table(
        ["elements erased", *(layers[s] for s in c.columns)],
        [[f"{100 * f:g}%", *(pct(v) for v in row)] for f, row in zip(c.index, c.values)],
    )


@block("nair", "clio_sample", "nair", "nair_clio_sample")
def nair_clio_sample(runs: Runs) -> str:
    t, default = runs.csv("nair_clio_sample", "table2.csv"), runs.csv("nair", "table2.csv").set_index("method")
    low, st = _budgets(t)[0], t.set_index("method").loc["clio_st"]
    names = {"clio_mt": "CLIO multi-tail (sampled widths)", "clio_st": "CLIO single tail (sampled widths)"}
    return (
        _nair_table(t, names)
        + f"\n\nCLIO single tail: {pct(st[low])} at the smallest budget and {pct(st.accuracy_overall)} overall,"
        f" against the original model's {pct(default.loc['original', 'accuracy_overall'])} (the paper's CLIO-st:"
        f" 43.2% / 22.8%; 91.5% vs 93.8%). NAIR at {pct(default.loc['nair', low])} /"
        f" {pct(default.loc['nair', 'accuracy_overall'])} overall is {default.loc['nair', low] / st[low]:.1f} times"
        ' CLIO-st\'s accuracy at the smallest budget (the paper: 2.1 times, "112% better").'
    )


@block("nair", "sweep", "nair_sweep")
def nair_sweep(runs: Runs) -> str:
    s = runs.jobs("nair_sweep").set_index("method")
    low, high = _budgets(s)[0], _budgets(s)[-1]
    cols = [
        ("original", low),
        ("original", high),
        ("nair", low),
        ("nair", high),
        ("clio_mt", low),
        ("clio_mt", high),
        ("raw_jpeg", low),
        ("nair", "accuracy_overall"),
    ]
    rows = [
        [split, f"{bps / 1e3:g}", f"{ber:g}", *(pct(job.loc[m, c]) for m, c in cols)]
        for (split, bps, ber), job in s.groupby(["split", "bandwidth_bps", "channel_ber"])
    ]
    names = {"original": "original", "nair": "NAIR", "clio_mt": "CLIO-mt", "raw_jpeg": "raw JPEG"}
    mt, nair = (s[s.split == s.split.max()].loc[m].iloc[0] for m in ("clio_mt", "nair"))
    jpeg = s.loc["raw_jpeg"].sort_values("channel_ber").groupby(["split", "bandwidth_bps"])[low]
    jpeg_drop = 100 * (jpeg.first() - jpeg.last()).max()  # the lowest BER against the highest
    return (
        table(
            ["split", "rate (kbit/s)", "BER", *(f"{names[m]} {_budget_ms(c)}" for m, c in cols[:-1]), "NAIR overall"],
            rows,
        )
        + f"\n\nAt split {mt.split} the multi-tail CLIO has {mt.num_tails:.0f} tails ({num(mt.tail_params)}"
        f" parameters against NAIR's {num(nair.tail_params)}). BER {s.channel_ber.max():g} costs the raw image's"
        f" JPEG up to {jpeg_drop:.1f} points at {_budget_ms(low)}."
    )


# --- mcPipe ----------------------------------------------------------------------------------
