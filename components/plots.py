"""PNG charts that evaluations attach to their records: grouped bars and annotated heatmaps.

Files only (the Agg backend): flows log them as MLflow artifacts, benchmarks commit them.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt


def heatmap(ax, rows: list[str], cols: list[str], values: list[list[float]], fmt: str,
            cmap: str, centre: bool = False) -> None:
    """Colour cells by value, print each value in its cell; `centre` makes 0 the midpoint."""
    limit = max(abs(v) for row in values for v in row) or 1.0
    image = ax.imshow(values, cmap=cmap, vmin=-limit if centre else 0, vmax=limit)
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8)
    plt.colorbar(image, ax=ax)


def grouped_bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    """One cluster of bars per group, one bar per series, in a stable colour order."""
    colours = plt.get_cmap("tab20").colors
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=name,
               color=colours[i % len(colours)])
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def perplexity_bars(path: Path, figures: dict[str, dict[str, float]], title: str) -> Path:
    """Per-domain perplexity of several models side by side: {model: {domain: perplexity}}."""
    domains = list(next(iter(figures.values())))
    fig, ax = plt.subplots(figsize=(8, 4))
    grouped_bars(ax, domains, {m: [p[d] for d in domains] for m, p in figures.items()})
    ax.set_ylabel("held-out perplexity (lower is better)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return save(fig, path)


def routing_heatmap(path: Path, routing: dict[str, dict[str, float]], title: str) -> Path:
    """Share of router mass per expert (columns) for each corpus (rows)."""
    experts = list(next(iter(routing.values())))
    fig, ax = plt.subplots(figsize=(7, 4))
    heatmap(ax, list(routing), experts, [[routing[c][e] for e in experts] for c in routing],
            ".0%", "Blues")
    ax.set_xlabel("expert")
    ax.set_title(title)
    return save(fig, path)
