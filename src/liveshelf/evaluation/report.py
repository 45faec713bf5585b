"""The human-readable side of an evaluation: ``report.md`` with a table and PNG plots.

Reads the same dict that becomes ``results.json`` (see :mod:`liveshelf.evaluation.runner`).
Plots use matplotlib's Agg backend: ``metrics.png`` (main metrics by model, bars) and
``ndcg_by_history.png`` (NDCG@10 by user-history-length bucket, one line per model) and,
after ``evaluate --rerank``, ``tradeoff.png`` (NDCG@10 vs exposure Gini per re-ranking setting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAIN_COLUMNS = ("recall@10", "ndcg@10", "mrr@10", "recall@50", "ndcg@50")
LIVE_COLUMNS = ("recall@1", "recall@5", "ndcg@5", "recall@10", "ndcg@10", "mrr@10")
BEYOND_COLUMNS = ("coverage@10", "novelty@10", "diversity@10", "gini@10", "tail_share@10")
SPLIT_COLUMNS = ("ndcg@10/new", "ndcg@10/repeat", "recall@10/new", "recall@10/repeat")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(results: dict[str, Any], columns: tuple[str, ...], fit_seconds: bool = False) -> str:
    """A markdown table: one row per model, the given metric columns (and fit seconds)."""
    head = "| model | " + " | ".join(columns) + (" | fit s |" if fit_seconds else " |")
    sep = "|---|" + "---:|" * (len(columns) + int(fit_seconds))
    rows = [head, sep]
    for name, entry in results["models"].items():
        m = entry["metrics"]
        fit = f" {_fmt(entry['fit_seconds'], 1)} |" if fit_seconds else ""
        rows.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |" + fit)
    return "\n".join(rows)


def _p(v: Any, resolution: float = 0.0) -> str:
    if v is None:
        return "–"
    return f"< {resolution:g}" if v < resolution else f"{v:.2g}"


def plot_metrics(results: dict[str, Any], columns: tuple[str, ...], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(results["models"])
    x = np.arange(len(columns))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(1.6 * len(columns) + 2, 4))
    for j, name in enumerate(models):
        vals = [results["models"][name]["metrics"].get(c) or 0.0 for c in columns]
        ax.bar(x + (j - (len(models) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x, columns)
    ax.set_ylabel("value")
    ax.set_title(f"{results['dataset']} ({results['protocol']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = results["by_history_length"]
    keep = [i for i, n in enumerate(hist["counts"]) if n > 0]  # empty buckets are left out
    labels = [f"{hist['buckets'][i]}\n(n={hist['counts'][i]})" for i in keep]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, vals in hist["ndcg@10"].items():
        xs = [j for j, i in enumerate(keep) if vals[i] is not None]
        ax.plot(xs, [vals[keep[j]] for j in xs], marker="o", label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("user history length (events before the target)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(f"NDCG@10 by history length — {results['dataset']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: dict[str, Any], out_dir: Path | str) -> Path:
    """Write ``report.md``, ``metrics.png`` and ``ndcg_by_history.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    live = results["protocol"] == "live"
    main = LIVE_COLUMNS if live else MAIN_COLUMNS
    plot_metrics(results, main, out_dir / "metrics.png")
    plot_history(results, out_dir / "ndcg_by_history.png")
    split = results.get("split", {})
    cases = split.get("cases", {})
    lines = [
        f"# Evaluation: {results['dataset']} — {results['protocol']}",
        "",
        f"- protocol: `{results['protocol']}`; test cases: {cases.get('all', '?')} "
        f"(new {cases.get('new', '?')}, repeat {cases.get('repeat', '?')}); items: {split.get('n_items', '?')}",
        f"- history items masked: {'yes' if results.get('mask_history') else 'no'}; "
        f"ties in ranks: {results.get('ties', 'pessimistic')}; seed {results.get('seed')}",
        f"- diversity measured on: {results.get('diversity_basis') or 'nothing (no categories or text)'}",
        "",
        "## Accuracy",
        "",
        markdown_table(results, main, fit_seconds=True),
        "",
        "![metrics by model](metrics.png)",
        "",
        "## New vs repeat targets",
        "",
        markdown_table(results, SPLIT_COLUMNS),
        "",
        "## Beyond accuracy (top 10)",
        "",
        markdown_table(results, BEYOND_COLUMNS),
        "",
        "## By user history length",
        "",
        "![NDCG@10 by history length](ndcg_by_history.png)",
        "",
    ]
    sig = results.get("significance", {})
    if sig.get("models"):
        base = sig["baseline"]
        lines += [
            f"## Paired tests against `{base}`",
            "",
            "Per test case, difference = model − baseline; 95% CI from a paired bootstrap over cases "
            "(1000 resamples), p-values from the paired t-test and the bootstrap.",
            "",
            "| model | metric | baseline | model | diff | 95% CI | p (t-test) | p (bootstrap) |",
            "|---|---|---:|---:|---:|---|---:|---:|",
        ]
        for name, per_metric in sig["models"].items():
            for metric, t in per_metric.items():
                lines.append(
                    f"| {name} | {metric} | {_fmt(t['mean_a'])} | {_fmt(t['mean_b'])} | {_fmt(t['mean_diff'])} "
                    f"| [{_fmt(t['ci_low'])}, {_fmt(t['ci_high'])}] | {_p(t['p_ttest'])} "
                    f"| {_p(t['p_bootstrap'], 1e-3)} |"
                )
        lines.append("")
    timing = results.get("timing", {})
    if timing:
        lines += ["## Time", "", "| model | fit s | eval s |", "|---|---:|---:|"]
        lines += [
            f"| {n} | {_fmt(t['fit_seconds'], 2)} | {_fmt(t['eval_seconds'], 2)} |" for n, t in timing.items()
        ]
        lines.append("")
    if results.get("rerank"):
        lines += rerank_section(results, out_dir)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------------------------------
# re-ranking trade-off (results["rerank"], written by ``evaluate --rerank``)
# ---------------------------------------------------------------------------------------
RERANK_COLUMNS = (
    "ndcg@10",
    "recall@10",
    "exposure_gini@10",
    "gini@10",
    "tail_share@10",
    "exposure_tail_share@10",
    "coverage@10",
    "disparity@10",
    "ndcg_cost",
)


def plot_tradeoff(rerank: dict[str, Any], path: Path, title: str = "") -> Path:
    """NDCG@10 against position-weighted exposure Gini, one line per model and re-ranking method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for j, (name, rows) in enumerate(rerank["models"].items()):
        color = f"C{j}"
        base = rows[0]
        ax.scatter([base["exposure_gini@10"]], [base["ndcg@10"]], color=color, marker="*", s=120, zorder=3)
        methods = list(dict.fromkeys(r["method"] for r in rows[1:]))
        for m, style in zip(methods, ("-", "--", ":", "-."), strict=False):
            pts = [base] + [r for r in rows[1:] if r["method"] == m]
            ax.plot(
                [r["exposure_gini@10"] for r in pts],
                [r["ndcg@10"] for r in pts],
                style,
                marker="o",
                color=color,
                label=f"{name} {m}",
            )
            for r in pts[1:]:
                ax.annotate(
                    f"{r['value']:g}",
                    (r["exposure_gini@10"], r["ndcg@10"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
    ax.set_xlabel("exposure Gini@10 (position-weighted; lower = fairer)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(title or "accuracy vs exposure fairness (★ = no re-ranking)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def rerank_section(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Markdown lines for the trade-off table and ``tradeoff.png``."""
    rr = results["rerank"]
    plot_tradeoff(rr, out_dir / "tradeoff.png", f"accuracy vs exposure fairness — {results['dataset']}")
    lines = [
        "## Fair re-ranking trade-off",
        "",
        f"Each model's top {rr['candidates']} candidates per case re-ranked with "
        f"{', '.join(rr['settings'])}; "
        f"exposure discount `{rr['discount']}`, counted per {rr['exposure_on']}; long tail = {rr['tail']}; "
        f"disparity = head/tail gap between exposure share and relevance share ({rr['relevance']}). "
        "Ties in the model's order break by item index, so the `none` row can differ slightly from the "
        "accuracy table (pessimistic ties). `ndcg_cost` = relative NDCG@10 loss against `none`.",
        "",
        "| model | setting | " + " | ".join(RERANK_COLUMNS) + " |",
        "|---|---|" + "---:|" * len(RERANK_COLUMNS),
    ]
    for name, rows in rr["models"].items():
        lines += [
            f"| {name} | {r['label']} | " + " | ".join(_fmt(r.get(c)) for c in RERANK_COLUMNS) + " |"
            for r in rows
        ]
    lines += ["", "![NDCG@10 vs exposure Gini](tradeoff.png)", ""]
    return lines


__all__ = [
    "markdown_table",
    "plot_history",
    "plot_metrics",
    "plot_tradeoff",
    "rerank_section",
    "write_report",
]
