"""Dream Distillation's plots: accuracy by source and student (the paper's figure 3(d)), a grid
of dreams per class (3(c)), and real activations beside the generated targets in two dimensions
(3(b), a PCA projection here rather than t-SNE: deterministic and cheap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.dream.generate import dream_targets
from experiments.dream.metadata import Metadata, pooled_activations
from sim.report import legend_below, save_figure

__all__ = ["plot"]


def plot(out_dir: Path, students: pd.DataFrame, dreams, labels, teacher, sample_x, sample_y, meta: Metadata, classes):
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    # accuracy by source and student width
    fig, ax = plt.subplots(figsize=(7, 4))
    table = students.pivot(index="source", columns="student_width", values="test_accuracy")
    table = table.loc[[s for s in ("random", "dream", "alternate", "real") if s in table.index]]
    table.plot.bar(ax=ax, rot=0, legend=False)
    ax.axhline(students.teacher_test_accuracy.iloc[0], color="k", ls="--", lw=1, label="teacher")
    ax.set_ylabel("student test accuracy")
    ax.set_xlabel("images the student was distilled from")
    ax.set_title("Dream Distillation: accuracy by source and student")
    legend_below(fig, title="WRN-16 width", title_fontsize=7)
    save_figure(fig, out_dir / "accuracy_by_source.png")

    # dreams per class
    per = 8
    labels = np.asarray(labels)
    fig, axes = plt.subplots(classes, per, figsize=(per * 0.9, classes * 0.9))
    for c in range(classes):
        idx = np.flatnonzero(labels == c)[:per]
        for j in range(per):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(idx):
                img = dreams[idx[j]]
                ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
        axes[c, 0].set_title(str(c), fontsize=7, loc="left")
    fig.suptitle("dreams, a row per class")
    save_figure(fig, out_dir / "dreams.png")

    # real activations and generated targets, projected together
    real = pooled_activations(teacher, sample_x).numpy()
    targets, t_labels = dream_targets(meta, len(real), 1.0, np.random.default_rng(0))
    pca = PCA(2).fit(np.vstack([real, targets]))
    r2, t2 = pca.transform(real), pca.transform(targets)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
    panels = ((axes[0], r2, sample_y.numpy(), "real activations"), (axes[1], t2, t_labels, "generated targets"))
    for ax, pts, lab, title in panels:
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap="tab10", s=8)
        ax.set_title(title)
    fig.colorbar(sc, ax=axes, label="class")
    save_figure(fig, out_dir / "activations.png")
