"""Analyse an A/B experiment from its logs and write the report (JSON, Markdown, PNG).

Attribution: every exposure row is exploded into one exposed target per recommendation
(``room`` for the feed, ``item`` for a shelf). An ``enter`` into a room counts as the click
of a feed exposure of that room; a ``click`` / ``cart`` / ``purchase`` of an item counts for
a shelf exposure of that item; in both cases only when the exposure came at most
``attribution_s`` seconds before the event, and each event counts once. Per-user metrics
(conversion, GMV and watch time per viewer) use the user's events after their first exposure.

Per arm: CTR and add-to-cart rate (per exposure, ratio of sums), conversion (share of viewers
who bought), GMV and watch time per viewer, each with a seeded bootstrap CI over users.
Against the control: the difference with its bootstrap CI, a z-test (conversion and
CTR), the always-valid mSPRT p-value of the primary metric, the guardrails and an SRM check.

>>> result = analyse(exp, store.exposures(name), store.outcomes(name))      # doctest: +SKIP
>>> write_report(result, store.folder(name))                                # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from liveshelf.experiment.stats import (
    bootstrap_ci,
    bootstrap_diff_ci,
    msprt_lr,
    srm_check,
    two_proportion_ztest,
)
from liveshelf.serving.abtest import METRICS, Experiment

#: metric -> (numerator column, denominator column or None for a per-viewer mean)
METRIC_COLUMNS: dict[str, tuple[str, str | None]] = {
    "ctr": ("clicks", "exposures"),
    "cart_rate": ("carts", "exposures"),
    "conversion": ("converted", None),
    "gmv_per_viewer": ("gmv", None),
    "watch_s_per_viewer": ("watch_s", None),
}

USER_COLUMNS = (
    "user",
    "arm",
    "first_ts",
    "exposures",
    "clicks",
    "carts",
    "purchases",
    "converted",
    "gmv",
    "watch_s",
)


# ------------------------------------------------------------------------------------ per-user table
def _frame(rows: list[dict[str, Any]] | pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = None
    return df


def user_table(
    exposures: list[dict[str, Any]] | pd.DataFrame,
    outcomes: list[dict[str, Any]] | pd.DataFrame,
    *,
    until: float | None = None,
    attribution_s: float = 3600.0,
) -> pd.DataFrame:
    """One row per exposed user: arm, first exposure time, exposures and attributed outcomes.

    ``until`` keeps only what was logged at or before that time (a look in the middle of the test).
    """
    ex = _frame(exposures, ("ts", "user", "arm", "surface", "room", "recs"))
    oc = _frame(outcomes, ("ts", "user", "type", "room", "item", "value"))
    if until is not None:
        ex = ex[ex["ts"].astype(float) <= until]
        oc = oc[oc["ts"].astype(float) <= until]
    if not len(ex):
        return pd.DataFrame(
            {c: pd.Series(dtype=object if c in ("user", "arm") else float) for c in USER_COLUMNS}
        )
    ex = ex.assign(ts=ex["ts"].astype(float), user=ex["user"].astype(str))
    first = (
        ex.sort_values("ts", kind="stable")
        .groupby("user", sort=False)
        .agg(arm=("arm", "first"), first_ts=("ts", "min"))
    )
    shown = ex[["ts", "user", "surface", "recs"]].explode("recs").dropna(subset=["recs"])
    shown = shown.assign(target=np.where(shown["surface"] == "feed", "r:", "i:") + shown["recs"].astype(str))
    users = first.assign(
        exposures=shown.groupby("user").size().reindex(first.index, fill_value=0).astype(float)
    )

    oc = oc.assign(ts=oc["ts"].astype(float), user=oc["user"].astype(str))
    oc = oc[oc["user"].isin(first.index)]
    oc = oc[oc["ts"] >= first["first_ts"].reindex(oc["user"]).to_numpy()]
    # attributed clicks / carts / purchases: an exposure of the same (user, target) within attribution_s before
    act = oc[oc["type"].isin(["enter", "click", "cart", "purchase"])]
    act = act.assign(
        target=np.where(
            act["type"] == "enter", "r:" + act["room"].astype(str), "i:" + act["item"].astype(str)
        )
    )
    counts = {"clicks": 0.0, "carts": 0.0}
    if len(act) and len(shown):
        left = act[["ts", "user", "type", "target"]].sort_values("ts", kind="stable").reset_index(drop=True)
        right = (
            shown[["ts", "user", "target"]]
            .rename(columns={"ts": "exp_ts"})
            .sort_values("exp_ts", kind="stable")
        )
        hit = pd.merge_asof(
            left,
            right,
            left_on="ts",
            right_on="exp_ts",
            by=["user", "target"],
            direction="backward",
            tolerance=attribution_s,
        )
        hit = hit[hit["exp_ts"].notna()]
        counts = {
            "clicks": hit[hit["type"].isin(["enter", "click"])].groupby("user").size(),
            "carts": hit[hit["type"] == "cart"].groupby("user").size(),
        }
    for col, s in counts.items():
        users[col] = s.reindex(users.index, fill_value=0).astype(float) if isinstance(s, pd.Series) else 0.0
    buys = oc[oc["type"] == "purchase"]
    users["purchases"] = buys.groupby("user").size().reindex(users.index, fill_value=0).astype(float)
    users["converted"] = (users["purchases"] > 0).astype(float)
    users["gmv"] = buys.groupby("user")["value"].sum().reindex(users.index, fill_value=0.0).astype(float)
    leaves = oc[oc["type"] == "leave"]
    users["watch_s"] = (
        leaves.groupby("user")["value"].sum().reindex(users.index, fill_value=0.0).astype(float)
    )
    return users.reset_index()[list(USER_COLUMNS)]


def moments(users: pd.DataFrame, metric: str) -> tuple[float, float, int]:
    """(estimate, per-user variance, users) of ``metric``; ratios linearised by the delta method."""
    num, den = METRIC_COLUMNS[metric]
    n = len(users)
    if n == 0:
        return float("nan"), float("nan"), 0
    v = users[num].to_numpy(np.float64)
    if den is None:
        return float(v.mean()), float(v.var(ddof=1)) if n > 1 else 0.0, n
    d = users[den].to_numpy(np.float64)
    md = d.mean()
    if md <= 0:
        return float("nan"), float("nan"), n
    r = v.sum() / d.sum()
    lin = (v - r * d) / md
    return float(r), float(lin.var(ddof=1)) if n > 1 else 0.0, n


# ------------------------------------------------------------------------------------ analysis
def _tau(exp: Experiment, control: pd.DataFrame) -> float:
    if exp.tau is not None:
        return float(exp.tau)
    est, _, _ = moments(control, exp.primary)
    return float(max(abs(est), 1e-6) * 0.1) if np.isfinite(est) else 1e-3


def sequential_path(
    exp: Experiment,
    exposures: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    *,
    looks: int = 30,
    attribution_s: float = 3600.0,
) -> list[dict[str, Any]]:
    """The always-valid p-value of the primary metric (each arm against the control) at ``looks`` times.

    Looks are spread over the exposure log's time span; each uses only what was logged until then.
    """
    if not exposures:
        return []
    ts = np.asarray([float(r["ts"]) for r in exposures])
    times = np.unique(np.quantile(ts, np.linspace(0, 1, looks + 1)[1:]))
    ex = pd.DataFrame(exposures)
    oc = pd.DataFrame(outcomes)
    control = exp.arms[0].name
    out: list[dict[str, Any]] = []
    running = {a.name: 1.0 for a in exp.arms[1:]}
    tau = None
    for t in times:
        users = user_table(ex, oc, until=float(t), attribution_s=attribution_s)
        ctrl = users[users["arm"] == control]
        tau = _tau(exp, ctrl) if tau is None else tau  # fixed at the first look
        ma, va, na = moments(ctrl, exp.primary)
        row: dict[str, Any] = {"t": float(t), "users": int(len(users))}
        for arm in exp.arms[1:]:
            mb, vb, nb = moments(users[users["arm"] == arm.name], exp.primary)
            lr = float(msprt_lr(ma, va, na, mb, vb, nb, tau)) if na > 1 and nb > 1 else 1.0
            running[arm.name] = min(running[arm.name], 1.0 / lr if lr > 0 else 1.0)
            row[arm.name] = running[arm.name]
        out.append(row)
    return out


def analyse(
    exp: Experiment,
    exposures: list[dict[str, Any]],
    outcomes: list[dict[str, Any]],
    *,
    looks: int = 30,
    n_boot: int = 1000,
    seed: int = 0,
    attribution_s: float = 3600.0,
) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    users = user_table(exposures, outcomes, attribution_s=attribution_s)
    control = exp.arms[0].name
    arms: dict[str, Any] = {}
    for k, arm in enumerate(exp.arms):
        u = users[users["arm"] == arm.name]
        m = {}
        for j, metric in enumerate(METRICS):
            num, den = METRIC_COLUMNS[metric]
            ci = bootstrap_ci(
                u[num].to_numpy(),
                None if den is None else u[den].to_numpy(),
                n_boot=n_boot,
                seed=seed + 31 * k + j,
            )
            m[metric] = ci.to_dict()
        arms[arm.name] = {
            "users": int(len(u)),
            "exposures": float(u["exposures"].sum()),
            "clicks": float(u["clicks"].sum()),
            "carts": float(u["carts"].sum()),
            "purchases": float(u["purchases"].sum()),
            "spec": arm.describe(),
            "metrics": m,
        }
    path = sequential_path(exp, exposures, outcomes, looks=looks, attribution_s=attribution_s)
    ctrl = users[users["arm"] == control]
    comparisons: dict[str, Any] = {}
    for k, arm in enumerate(exp.arms[1:], start=1):
        u = users[users["arm"] == arm.name]
        comp: dict[str, Any] = {}
        for j, metric in enumerate(METRICS):
            num, den = METRIC_COLUMNS[metric]
            diff = bootstrap_diff_ci(
                ctrl[num].to_numpy(),
                u[num].to_numpy(),
                None if den is None else ctrl[den].to_numpy(),
                None if den is None else u[den].to_numpy(),
                n_boot=n_boot,
                seed=seed + 1000 + 31 * k + j,
            )
            base = arms[control]["metrics"][metric]["estimate"]
            comp[metric] = {**diff.to_dict(), "relative": diff.estimate / base if base else float("nan")}
        comp["conversion"]["ztest"] = two_proportion_ztest(
            ctrl["converted"].sum(), len(ctrl), u["converted"].sum(), len(u)
        ).to_dict()
        comp["ctr"]["ztest"] = two_proportion_ztest(
            ctrl["clicks"].sum(), ctrl["exposures"].sum(), u["clicks"].sum(), u["exposures"].sum()
        ).to_dict()
        p_seq = path[-1][arm.name] if path else 1.0
        guard = []
        for g in exp.guardrails:
            rel = comp[g.metric]["relative"]
            low_rel = (
                comp[g.metric]["low"] / arms[control]["metrics"][g.metric]["estimate"]
                if arms[control]["metrics"][g.metric]["estimate"]
                else float("nan")
            )
            guard.append(
                {
                    "metric": g.metric,
                    "max_drop": g.max_drop,
                    "relative": rel,
                    "ci_low_relative": low_rel,
                    "breached": bool(np.isfinite(rel) and rel < -g.max_drop),
                }
            )
        comparisons[arm.name] = {
            "metrics": comp,
            "primary": exp.primary,
            "always_valid_p": p_seq,
            "significant": bool(p_seq <= exp.alpha),
            "guardrails": guard,
        }
    srm = srm_check([arms[a.name]["users"] for a in exp.arms], exp.shares) if len(users) else None
    return {
        "experiment": exp.name,
        "status": exp.status,
        "primary": exp.primary,
        "alpha": exp.alpha,
        "control": control,
        "users": int(len(users)),
        "arms": arms,
        "comparisons": comparisons,
        "srm": None if srm is None else srm.to_dict(),
        "sequential": path,
        "shares": dict(zip([a.name for a in exp.arms], exp.shares, strict=True)),
    }


# ------------------------------------------------------------------------------------ the report
def _fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def markdown(result: dict[str, Any]) -> str:
    """The report as Markdown (per-arm metrics with CIs, comparisons, SRM, guardrails)."""
    lines = [
        f"# A/B experiment `{result['experiment']}`",
        "",
        f"Status: **{result['status']}** · users exposed: **{result['users']}** · primary metric: "
        f"**{result['primary']}** · alpha = {result['alpha']}",
        "",
        "## Arms",
        "",
        "| arm | spec | users | exposures | " + " | ".join(METRICS) + " |",
        "|---|---|---:|---:|" + "---:|" * len(METRICS),
    ]
    for name, a in result["arms"].items():
        cells = [
            f"{_fmt(m['estimate'])} [{_fmt(m['low'])}, {_fmt(m['high'])}]"
            for m in (a["metrics"][k] for k in METRICS)
        ]
        lines.append(
            f"| {name} | {a['spec']} | {a['users']} | {int(a['exposures'])} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "Brackets: 95 % bootstrap intervals over users (seeded).",
        "",
        f"## Against the control `{result['control']}`",
        "",
    ]
    for name, c in result["comparisons"].items():
        verdict = "significant" if c["significant"] else "not significant (yet)"
        lines += [
            f"### {name}: {verdict}",
            "",
            f"Always-valid p-value (mSPRT) of {c['primary']}: **{_fmt(c['always_valid_p'])}** "
            "(safe to read at any time).",
            "",
            "| metric | difference | 95 % CI | relative | z-test p |",
            "|---|---:|---|---:|---:|",
        ]
        for k in METRICS:
            m = c["metrics"][k]
            zp = _fmt(m["ztest"]["p_value"]) if "ztest" in m else "-"
            lines.append(
                f"| {k} | {_fmt(m['estimate'])} | [{_fmt(m['low'])}, {_fmt(m['high'])}] | "
                f"{_fmt(100 * m['relative'], 3)} % | {zp} |"
            )
        for g in c["guardrails"]:
            state = "**BREACHED**" if g["breached"] else "ok"
            lines.append(
                f"\nGuardrail {g['metric']} (max drop {100 * g['max_drop']:.0f} %): {state}, "
                f"change {_fmt(100 * g['relative'], 3)} %"
            )
        lines.append("")
    srm = result["srm"]
    if srm is not None:
        state = "**MISMATCH: do not trust this test**" if srm["mismatch"] else "ok"
        lines += [
            "## Sample ratio",
            "",
            f"Observed users {list(srm['observed'])} against expected "
            f"{[round(e, 1) for e in srm['expected']]}: chi2 = {_fmt(srm['chi2'])}, p = {_fmt(srm['p_value'])}"
            f" ({state}; threshold {srm['threshold']}).",
            "",
        ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """PNG: each metric per arm with its CI, and the always-valid p-value over the looks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS) + 1, figsize=(4 * (len(METRICS) + 1), 3.6))
    names = list(result["arms"])
    for ax, metric in zip(axes[:-1], METRICS, strict=True):
        est = np.array([result["arms"][a]["metrics"][metric]["estimate"] for a in names], dtype=float)
        lo = np.array([result["arms"][a]["metrics"][metric]["low"] for a in names], dtype=float)
        hi = np.array([result["arms"][a]["metrics"][metric]["high"] for a in names], dtype=float)
        err = np.nan_to_num(np.vstack([est - lo, hi - est]))
        ax.bar(
            names, np.nan_to_num(est), yerr=err, capsize=4, color=["#888888"] + ["#3b7dd8"] * (len(names) - 1)
        )
        ax.set_title(metric)
    ax = axes[-1]
    seq = result["sequential"]
    if seq:
        users = [r["users"] for r in seq]
        for name in result["comparisons"]:
            ax.plot(users, [max(r[name], 1e-12) for r in seq], marker=".", label=name)
    ax.axhline(result["alpha"], color="red", linestyle="--", label=f"alpha = {result['alpha']}")
    ax.set_yscale("log")
    ax.set_xlabel("users exposed")
    ax.set_title("always-valid p-value")
    ax.legend(fontsize=8)
    fig.suptitle(f"A/B experiment {result['experiment']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "png": folder / "report.png"}
    paths["json"].write_text(json.dumps(result, indent=1, sort_keys=True, default=float))
    paths["markdown"].write_text(markdown(result))
    plot(result, paths["png"])
    return paths


__all__ = [
    "METRIC_COLUMNS",
    "analyse",
    "markdown",
    "moments",
    "plot",
    "sequential_path",
    "user_table",
    "write_report",
]
