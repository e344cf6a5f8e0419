"""The result blocks of docs/nonn.md, from the NoNN runs' CSVs (see docs/make_results.py)."""

from __future__ import annotations

import math

import numpy as np
from results_common import (
    Runs,
    beta_name,
    block,
    claims_table,
    held,
    mean_sd,
    ms,
    num,
    per_job,
    pm,
    points,
    table,
    times,
)

NONN = {"nonn": 2, "nonn_4s": 4, "nonn_8s": 8}  # run -> students


# --- NoNN ------------------------------------------------------------------------------------
DEVICE_NAMES = {
    "rpi3_400mhz": ("Pi", "Raspberry Pis"),
    "odroid_xu4": ("Odroid", "Odroids"),
    "rpi3_400mhz_pytorch": ("Pi", "Raspberry Pis, PyTorch rate"),
}
FIGURE7 = "NoNN-8S, Odroid runs "  # calibration.csv's figure 7 deployments


def _place(deployment: str, device: str) -> str:
    one, many = DEVICE_NAMES[device]
    if deployment.startswith("teacher"):
        return f"teacher (2.6 GFLOP) on one {one}"
    return f"{deployment} {many}" if deployment[-1].isdigit() else f"{deployment} on {many}"


@block("nonn", "calibration", "nonn")
def nonn_calibration(runs: Runs) -> str:
    cal, rows = runs.csv("nonn", "calibration.csv"), []
    cal = cal[~cal.deployment.str.startswith(FIGURE7)]
    for r in cal.itertuples():
        err = f"{r.latency_error_pct:+.1f}%" if abs(r.latency_error_pct) < 20 else f"{r.latency_error_pct:+.0f}%"
        if math.isnan(r.paper_compute_ms):
            sim, paper = f"{r.sim_compute_ms:.0f} / {r.sim_communication_ms:.0f}", f"{r.paper_latency_ms:,.0f} total"
        else:
            sim = f"{r.sim_compute_ms:.1f} / {r.sim_communication_ms:.1f}"
            paper = f"{r.paper_compute_ms:.2f} / {r.paper_communication_ms:.2f}"
        rows.append([_place(r.deployment, r.device), sim, paper, err])
    energy = [
        f"{_place(r.deployment, r.device)} {r.sim_energy_per_node_mj:.0f} against {r.paper_energy_per_node_mj:.0f}"
        f" ({r.sim_energy_per_node_mj / r.paper_energy_per_node_mj - 1:+.0%})"
        for r in cal.itertuples()
        if not math.isnan(r.paper_energy_per_node_mj)
    ]
    return (
        table(["deployment", "simulated compute / communication (ms)", "paper (ms)", "latency error"], rows)
        + f"\n\nEnergy per node, simulated against measured (mJ): {'; '.join(energy)}."
    )


@block("nonn", "figure7", "nonn")
def nonn_figure7(runs: Runs) -> str:
    cal = runs.csv("nonn", "calibration.csv")
    fig = cal[cal.deployment.str.startswith(FIGURE7)]
    pis = cal[(cal.deployment == "NoNN-8S") & (cal.device == "rpi3_400mhz")].iloc[0]
    energy = fig.sim_energy_total_mj
    return (
        table(
            ["students on the Odroid (of 8)", *(d.removeprefix(FIGURE7) for d in fig.deployment)],
            [
                ["latency", *(f"{v:.1f} ms" for v in fig.sim_latency_ms)],
                ["communication (latency - slowest compute)", *(f"{v:.1f} ms" for v in fig.sim_communication_ms)],
                ["energy of all the devices", *(f"{v:,.0f} mJ" for v in energy)],
                ["against 8 Pis", *(f"{v / pis.sim_energy_total_mj - 1:+.0%}" for v in energy)],
            ],
        )
        + f"\n\n8 Pis, one student each: {pis.sim_latency_ms:.1f} ms and {pis.sim_energy_total_mj:,.0f} mJ in all."
        f" Communication averages {fig.sim_communication_ms.mean():.1f} ms over the eight (the paper: 30.65 ms)."
        f" Lowest latency with {fig.deployment.iloc[int(fig.sim_latency_ms.argmin())].removeprefix(FIGURE7)} students"
        f" on the Odroid (the paper: 4); lowest energy with"
        f" {fig.deployment.iloc[int(energy.argmin())].removeprefix(FIGURE7)} (the paper: 1)."
    )


@block("nonn", "partitioning", *NONN)
def nonn_partitioning(runs: Runs) -> str:
    rows = []
    for run, k in NONN.items():
        s = runs.summary(run)
        sizes = [int(v) for v in str(s.partition_sizes).split()]
        rows.append(
            [
                k,
                s.communities,
                f"{s.modularity:.3f}",
                f"{s.p0_filters} of {s.p0_filters + sum(sizes)}",
                f"{s.teacher_val_accuracy:.3f}",
                f"{s.p0_zeroed_val_accuracy:.3f}",
                ", ".join(map(str, sizes)),
            ]
        )
    return table(
        [
            "students",
            "communities",
            "modularity",
            "P0 (dropped) filters",
            "teacher validation accuracy",
            "with P0 zeroed",
            "partition sizes",
        ],
        rows,
    )


@block("nonn", "accuracy", *NONN)
def nonn_accuracy(runs: Runs) -> str:
    models = ["teacher", "NoNN", "NoNN, KD only", "KD student", "ATKD student"]
    tables = {k: runs.csv(run, "comparison.csv").set_index("model") for run, k in NONN.items()}
    rows = [[f"{k} students", *(f"{t.loc[m, 'accuracy']:.3f}" for m in models)] for k, t in tables.items()]
    params = [[num(t.loc[m, "params_per_device"]) for t in tables.values()] for m in models]
    cells = [" / ".join(dict.fromkeys(p)) for p in params]
    for i, same_as in ((2, "NoNN"), (4, "KD")):
        cells[i] = f"same as {same_as}" if params[i] == params[i - 1] else cells[i]
    label = f"parameters per device ({' / '.join(f'{k}S' for k in tables)})"
    return table(["", *models], [*rows, [label, *cells]])


@block("nonn", "seeds", "nonn_seeds")
def nonn_seeds(runs: Runs) -> str:
    s = runs.jobs("nonn_seeds")
    cols = ["teacher", "nonn", "nonn_kd_only", "kd_student", "atkd_student"]
    return table(
        [
            f"mean ± sd over seeds {', '.join(map(str, s.seed))}",
            "teacher",
            "NoNN",
            "NoNN, KD only",
            "KD student",
            "ATKD student",
            "P0 filters",
            "change with P0 zeroed (validation points)",
        ],
        [
            [
                f"{s.num_students.iloc[0]} students",
                *(mean_sd(s[f"{c}_accuracy"]) for c in cols),
                mean_sd(s.p0_filters, ".0f"),
                mean_sd(100 * s.delta_val_accuracy, ".1f"),
            ]
        ],
    )


@block("nonn", "beta", *NONN)
def nonn_beta(runs: Runs) -> str:
    rows, betas = [], []
    for run, k in NONN.items():
        b, s = runs.csv(run, "beta_search.csv"), runs.summary(run)
        betas = sorted(b.beta.unique())
        for model, picked in (("NoNN", s.nonn_beta), ("ATKD student", s.atkd_beta)):
            acc = b[b.model == model].set_index("beta").val_accuracy
            rows.append([k, model, *(f"{acc[v]:.3f}" for v in betas), beta_name(picked)])
    return table(["students", "model", *(f"beta {beta_name(v)}" for v in betas), "picked"], rows)


@block("nonn", "budgets", *NONN)
def nonn_budgets(runs: Runs) -> str:
    rows = []
    for run, k in NONN.items():
        st, cmp = runs.csv(run, "students.csv"), runs.csv(run, "comparison.csv").set_index("model")
        rows.append(
            [
                k,
                num(st.params.max()),
                f"{num(st.memory_bytes.max())} / {num(st.memory_budget_bytes.iloc[0])}",
                f"{st.flops.max() / 1e6:.2f} / {st.flop_budget.iloc[0] / 1e6:.2f}",
                st.width_multiplier.iloc[0],
                num(cmp.loc["KD student", "total_params"]),
            ]
        )
    return table(
        [
            "students",
            "parameters (largest student)",
            "memory bytes (8-bit) / budget",
            "MFLOP per image / budget",
            "width",
            "single KD / ATKD student parameters",
        ],
        rows,
    )


@block("nonn", "inference", *NONN)
def nonn_inference(runs: Runs) -> str:
    rows = [
        [
            f"{k} devices",
            ms(s.nonn_latency_s),
            ms(s.split_latency_s),
            f"{s.speedup_vs_split:.1f}x",
            ms(s.teacher_latency_s),
        ]
        for s, k in ((runs.summary(run), k) for run, k in NONN.items())
    ]
    inf = runs.csv("nonn", "inference.csv").set_index(["scenario", "method"]).compute_s
    student, teacher = inf["homogeneous rpi3_400mhz", "NoNN"], inf["teacher on one rpi3_400mhz", "teacher"]
    return (
        table(["", "NoNN", "split ATKD student", "speed-up", "teacher on one Pi"], rows)
        + f"\n\nOn a Pi a student computes in {ms(student)}, the whole teacher in {ms(teacher)}."
    )


@block("nonn", "heterogeneous", "nonn_8s")
def nonn_heterogeneous(runs: Runs) -> str:
    inf = runs.csv("nonn_8s", "inference.csv")
    het = inf[inf.scenario.str.startswith("odroid_xu4 runs") & (inf.method == "NoNN")]
    return table(
        ["students on the Odroid (8 students)", *(s.rpartition(" ")[2] for s in het.scenario)],
        [
            ["latency", *(ms(v) for v in het.latency_s)],
            ["energy per node", *(f"{1e3 * v:.0f} mJ" for v in het.energy_per_node_j)],
        ],
    )


@block("nonn", "robustness", "nonn_8s")
def nonn_robustness(runs: Runs) -> str:
    r = runs.csv("nonn_8s", "robustness.csv")
    min_max = ["" if n == 1 else f"{lo:.3f} / {hi:.3f}" for n, lo, hi in zip(r.subsets, r.accuracy_min, r.accuracy_max)]
    by = r.set_index("active_devices")
    return (
        table(
            ["active devices", *r.active_devices],
            [["mean accuracy", *(f"{v:.3f}" for v in r.accuracy_mean)], ["min / max", *min_max]],
        )
        + f"\n\nThe best single student alone reaches {by.accuracy_max[1]:.3f} (the paper's: 82.8%); with four"
        f" devices active the mean is {by.accuracy_mean[4]:.3f} (the paper: above 93%)."
    )


# --- NAIR ------------------------------------------------------------------------------------
# NAIR's columns accuracy_at_<budget>_s, and their headings


# --- the claim table (issue 17) ------------------------------------------------------------
@block("nonn", "claims", "nonn_mnist5k_seeds")
def nonn_claims(runs: Runs) -> str:
    run = "nonn_mnist5k_seeds"
    s, cmp = runs.jobs(run), [c.set_index("model") for c in runs.job_csvs(run, "comparison.csv")]
    inf = [i.set_index(["scenario", "method"]) for i in runs.job_csvs(run, "inference.csv")]
    best_base = np.maximum(s.kd_student_accuracy, s.atkd_student_accuracy)
    gap = s.teacher_accuracy - s.nonn_accuracy
    dm = per_job(cmp, lambda c: c.loc["teacher", "total_params"] / c.loc["NoNN", "total_params"])
    df = per_job(
        cmp,
        lambda c: c.loc["teacher", "flops_per_device"] / (c.loc["NoNN", "flops_per_device"] * c.loc["NoNN", "devices"]),
    )
    energy = per_job(
        inf,
        lambda i: (
            i.xs("teacher", level="method").energy_per_node_j.iloc[0]
            / i.xs("NoNN", level="method").energy_per_node_j.iloc[0]
        ),
    )
    first = lambda method, col: per_job(inf, lambda i: i.xs(method, level="method")[col].iloc[0])
    split = lambda col: per_job(
        inf, lambda i: i[i.index.get_level_values("method").str.startswith("split")][col].iloc[0]
    )
    width = per_job(runs.job_csvs(run, "students.csv"), lambda st: st.width_multiplier.iloc[0])
    rows = [
        [
            "NoNN beats a single KD or ATKD student of about its total size",
            "94.32% against 93.79% (KD) and 93.83% (ATKD), CIFAR-10, 2 students",
            f"NoNN {pm(s.nonn_accuracy)}; KD {pm(s.kd_student_accuracy)}; ATKD {pm(s.atkd_student_accuracy)}",
            held(s.nonn_accuracy > best_base),
            f"NoNN minus the better baseline: {points(s.nonn_accuracy - best_base)}. {WHY['nonn_baselines']}",
        ],
        [
            "NoNN comes close to the teacher (within 2 points here)",
            "95.49% teacher, NoNN-2S 1.2 points below, NoNN-8S 0.5",
            f"teacher {pm(s.teacher_accuracy)}; NoNN {points(gap)} below",
            held(gap <= 0.02),
            WHY["nonn_teacher"],
        ],
        [
            "Activation transfer on the partitions is what lifts NoNN: trained by KD alone it scores less",
            "94.53% against 93.96% (NoNN-2S-XL, KD only)",
            f"NoNN {pm(s.nonn_accuracy)}; KD only {pm(s.nonn_kd_only_accuracy)}",
            held(s.nonn_accuracy > s.nonn_kd_only_accuracy),
            f"NoNN minus KD only: {points(s.nonn_accuracy - s.nonn_kd_only_accuracy)}. {WHY['nonn_kd_only']}",
        ],
        [
            "The whole NoNN is many times smaller and cheaper than the teacher",
            "10x fewer parameters, 7.7x fewer FLOPs (NoNN-2S; 2.5x-24x and 2x-15x over table 4)",
            f"{times(dm)} fewer parameters, {times(df)} fewer FLOPs",
            held((dm >= 2.5) & (df >= 2)),
            f"Each student: {pm(s.student_params_max, 1, 0, '')} parameters and"
            f" {pm(s.student_flops_max, 1e-6, 2, ' MFLOP')} per image (budgets {s.memory_budget_bytes.iloc[0]:,}"
            f" bytes, {s.flop_budget.iloc[0] / 1e6:g} MFLOP; within both on {s.students_fit_budget.astype(bool).sum()}"
            f" of {len(s)} seeds), width {pm(width, 1, 2, '')}. {WHY['nonn_budget']}",
        ],
        [
            "Distributed NoNN is far faster than one compact student split across the same devices",
            "up to 33x lower latency",
            f"{times(s.speedup_vs_split)} (NoNN {pm(s.nonn_latency_s, 1e3, 1, ' ms')})",
            held(s.speedup_vs_split > 1),
            f"Bytes per image: NoNN {pm(first('NoNN', 'bytes_per_inference'), 1, 0, '')}, the split student"
            f" {pm(split('bytes_per_inference'), 1, 0, '')}. {WHY['nonn_split']}",
        ],
        [
            "The students on small devices beat the whole teacher on one device in latency and energy per node",
            "6.22x-12.22x faster, 12.99x-14.36x less energy per node",
            f"{times(s.speedup_vs_teacher)} faster; {times(energy)} less energy per node",
            held((s.speedup_vs_teacher > 1) & (energy > 1)),
            f"On a Pi the teacher computes {pm(first('teacher', 'compute_s'), 1e3, 1, ' ms')}; NoNN's"
            f" {pm(first('NoNN', 'latency_s'), 1e3, 1, ' ms')} is {pm(first('NoNN', 'compute_s'), 1e3, 1, ' ms')}"
            f" of compute and the rest messages. {WHY['nonn_teacher_device']}",
        ],
    ]
    return claims_table(s.seed, rows)


# Why each claim came out as it did: hand-written; a number in it only as the runs give it.
WHY = {
    "nonn_baselines": "Within the seeds' spread, as on the 8x8 digits: the three students, trained alike, are the"
    " narrowest the architecture allows (next rows), and a test image is 0.1 points. Not reproduced; a beta search"
    " (skipped here for time) and full-length training are what the paper had beyond this.",
    "nonn_teacher": "Holds on every seed, as it did on the digits: the paper's order of gap, from students many times"
    " smaller than the teacher.",
    "nonn_kd_only": "Activation transfer adds on average, by less than the seeds' spread; on the digits the two were"
    " level. From dreams it matters far more (docs/dream.md).",
    "nonn_budget": "Holds, and by more than the paper's because the per-device budgets are the digits': at 28x28 no"
    " width meets the 3.5 MFLOP, so the search keeps the narrowest, a little over it.",
    "nonn_split": "The split student exchanges activations at every convolution, NoNN sends only the students' pooled"
    " features; with 2 devices that gap is smallest. The paper's 33x is for more devices, and on the digits the"
    " speed-up grew with them (the inference table above).",
    "nonn_teacher_device": "The speed-up falls in the paper's range. Energy per node is below its range: NoNN's time"
    " on a Pi is mostly messages at the device's fixed per-message cost, not compute.",
}
