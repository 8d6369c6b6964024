"""The evidence document (``docs/RESULTS.md``): several sweeps' comparisons in one Markdown file.

Every table, figure and sentence in it is computed from the run directories (``fggp results``), so the
document cannot drift from the runs: rerunning the sweeps and the command rewrites it. The statistics
are the report's (fggp.report); this module adds what a reader of the evidence asks next: where the
method under study (``subject``, FGGP by default) wins or loses and whether that gap is noise, how many
weights each layer keeps at the most extreme target, and what the runs cost on which machine.
"""

from __future__ import annotations

import io
import json
import math
import os
from datetime import datetime
from pathlib import Path

import pandas as pd

from .report import (EMPTY_CELL, SETTING, TABLE_LEGEND, average_rank, collapse_markdown,
                     column_title, comparisons, identical_masks, identical_masks_notes,
                     layer_collapse, load_results, markdown_table, noise_sentence, not_applicable,
                     not_applicable_markdown, overview, plot_accuracy_vs_flops,
                     plot_accuracy_vs_sparsity, problems_markdown, recorded_flops, seeds_clause,
                     setup_sections, setups, size_speed_markdown, summary)
from .report.collapse import _layer_shapes
from .report.versus import (SUBJECT, each_markdown, each_sentence, subject_markdown, subject_vs_best,
                            subject_vs_each)
from .report.loading import has_runs
from .report.setups import _expanded, _is_dense, _label, _pruned, _recipe_order
from .train.checkpoint import atomic_write

def layer_kept(df: pd.DataFrame, target: float | None = None) -> pd.DataFrame:
    """Kept weights per layer of each recipe's final masks at ``target`` (default: the highest target),
    as ``mean [min, max]`` over completed seeds; the header gives each layer's outputs and size. Counts, not
    densities: a collapsed layer is one with fewer kept weights than outputs."""
    done = _pruned(_expanded(df))
    done = done[done["layer_density"].map(lambda d: isinstance(d, dict) and bool(d))] if len(done) else done
    if done.empty:
        return pd.DataFrame()
    target = float(done["target_sparsity"].max()) if target is None else target
    here = done[done["target_sparsity"] == target]
    rows, header = {}, {}
    several = here["setup"].nunique() > 1
    for (setup, recipe), g in sorted(here.groupby(["setup", "recipe"]), key=lambda item: _recipe_order(item[0][1])):
        label = f"{recipe} [{setup}]" if several else recipe
        kept = {}
        for density, shapes, arch in zip(g["layer_density"], g["layer_shapes"], g["arch"]):
            sizes = ({n: (math.prod(s), int(s[0])) for n, s in shapes.items()} if isinstance(shapes, dict) and shapes
                     else _layer_shapes(arch) or {})
            for name, d in density.items():
                if name not in sizes:
                    continue
                size, outputs = sizes[name]
                header[name] = f"{name} ({outputs} out, {size:,})"
                kept.setdefault(name, []).append(round(d * size))
        rows[label] = {header[n]: f"{sum(v) / len(v):.0f} [{min(v)}, {max(v)}]" for n, v in kept.items()}
    out = pd.DataFrame.from_dict(rows, orient="index").fillna(EMPTY_CELL)
    out.index.name = f"recipe (n={here.groupby('recipe')['seed'].nunique().max()} seeds)"
    out.attrs["target"] = target
    return out


def timing(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Wall time per recipe (mean and total over its completed runs) and lines on where they ran: the
    devices, versions, and the span from the first run's start to the last run's end."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return pd.DataFrame(), []
    per = (done.groupby("recipe")["wall_seconds"].agg(runs="count", mean_s="mean", total_s="sum").reset_index())
    per = per.assign(_r=per["recipe"].map(_recipe_order)).sort_values("_r").drop(columns="_r").set_index("recipe")
    view = pd.DataFrame({"runs": per["runs"], "mean per run (s)": per["mean_s"].map(lambda x: f"{x:.0f}"),
                         "total (min)": per["total_s"].map(lambda x: f"{x / 60:.1f}")})
    timed = done[done["finished_at"].notna() & done["wall_seconds"].notna()]
    ends = [datetime.fromisoformat(t).timestamp() for t in timed["finished_at"]]
    starts = [end - w for end, w in zip(ends, timed["wall_seconds"])]
    devices = sorted({d if isinstance(d, str) else "?" for d in done["device"]})
    versions = sorted({", ".join(f"{k} {v}" for k, v in sorted(v.items())) if isinstance(v, dict) else ""
                       for v in done["versions"]})
    lines = [f"{len(done)} completed runs, {done['wall_seconds'].sum() / 60:.1f} minutes of run time in all "
             f"(each run's own wall clock, data loading and evaluation included).",
             f"Device: {'; '.join(devices)}. Versions: {'; '.join(versions)}."]
    if ends:
        spans = sittings(list(zip(starts, ends)))
        busy = sum(end - start for start, end in spans)
        apart = (f", summed over {len(spans)} sittings more than {SITTING_GAP_S // 60} minutes apart"
                 if len(spans) > 1 else "")
        lines.append(f"Wall clock from the first run's start to the last run's end: {busy / 60:.1f} minutes (runs "
                     f"overlap when the sweep ran several at a time){apart}.")
    return view, lines


SITTING_GAP_S = 600


def sittings(intervals: list[tuple[float, float]], gap_s: float = SITTING_GAP_S) -> list[tuple[float, float]]:
    """Runs' (start, end) merged into sittings: overlapping runs, or runs less than ``gap_s`` apart (a kernel
    starting between points), are one sitting; a grid extended with more seeds a day later is two, and the
    night between them is not sweep time."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start - merged[-1][1] <= gap_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def at_chance(df: pd.DataFrame, margin_pct: float = 0.5) -> pd.DataFrame:
    """Every completed pruned run with whether its final accuracy is at chance (<= 1/classes + margin); the
    classes are the outputs of the architecture's last layer (10 for an arch this session does not know)."""
    done = _pruned(_expanded(df))
    if done.empty:
        return pd.DataFrame(columns=["recipe", "target_sparsity", "seed", "at_chance"])

    def classes(arch):
        shapes = _layer_shapes(arch) if isinstance(arch, str) else None
        return list(shapes.values())[-1][1] if shapes else 10

    limit = [1 / classes(a) + margin_pct / 100 for a in done["arch"]]
    out = done.assign(at_chance=done["final_test_acc"].to_numpy(float) <= limit)
    out = out.assign(_r=out["recipe"].map(_recipe_order)).sort_values(["_r", "target_sparsity", "seed"])
    return out[["recipe", "target_sparsity", "seed", "at_chance"]].reset_index(drop=True)


def _columns(n: int) -> str:
    return f"{n} column{'s' * (n != 1)}"


def _gaps(rows: pd.DataFrame, seeds: bool = False, columns: int = 1) -> str:
    """``column: other by X pp, p = P, adjusted Q`` for each row of ``subject_vs_best``; with ``seeds``, the p's only
    where p < 0.05 alone, and how many seeds would separate the gap (``seeds_clause``; ``columns`` tested)."""
    items = []
    for t, o, d, p, q, v, n, sd in zip(rows[SETTING].itertuples(index=False, name=None), rows["other"],
                                       rows["diff_mean_pct"], rows["p_value"], rows["p_adjusted"], rows["verdict"],
                                       rows["seeds_needed"], rows["diff_std_pct"]):
        text = f"{column_title(t)}: {o} by {-d:.2f} pp"
        if not seeds or "alone" in v:
            text += f", p = {p:.3g}, adjusted {q:.3g}"
        if seeds and (clause := seeds_clause(d, n, v, sd, columns)):
            text += f", {clause}"
        items.append(text)
    return "; ".join(items)


def findings(df: pd.DataFrame, subject: str = SUBJECT) -> list[str]:
    """Plain sentences, computed from the same tables. First, per setup, which differences are within noise at
    this number of seeds (``noise_sentence``); then wins, ranks, losses and whether they are noise (with the
    seeds a gap within noise would need), the distance to dense, recipes that chose the very same masks, and
    collapsed layers by recipe."""
    out = []
    comps, ranks, vs = comparisons(df), average_rank(df), subject_vs_best(df, subject)
    each_all = subject_vs_each(df, subject)
    all_setups, table = setups(df), summary(df)
    for setup in all_setups:
        prefix = "" if len(all_setups) == 1 else f"[{setup}] "
        c = comps[comps["setup"] == setup]
        r = ranks[ranks["setup"] == setup].reset_index(drop=True)
        v = vs[vs["setup"] == setup] if len(vs) else vs
        if c.empty:
            continue
        noise = noise_sentence(c, _pruned(table[table["setup"] == setup])["n"])
        if noise:
            out.append(prefix + noise)
        wins = c[c["best"] == subject]
        if subject in set(r["recipe"]):
            if len(wins):
                titles = ", ".join(column_title(t) for t in wins[SETTING].itertuples(index=False, name=None))
                out.append(f"{prefix}{subject} has the highest mean in {len(wins)} of {len(c)} columns ({titles}); "
                           f"separated from the runner-up (paired t test, p < 0.05 after Benjamini-Hochberg over the "
                           f"setup's columns) in "
                           f"{int((wins['verdict'].str.startswith('separated')).sum())} of them.")
            else:
                out.append(f"{prefix}{subject} has the highest mean in none of its {_columns(len(c))}.")
            row = r[r["recipe"] == subject].iloc[0]
            place = int(r.index[r["recipe"] == subject][0]) + 1
            top = r.iloc[0]
            tied = [x for x, a in zip(r["recipe"], r["average_rank"])
                    if x != subject and math.isclose(a, row["average_rank"], abs_tol=1e-9)]
            out.append(f"{prefix}Average rank of {subject}: {row['average_rank']:.2f} over {row['columns']} columns, "
                       f"{place} of {len(r)} pruned recipes"
                       + (f", tied with {', '.join(tied)}" if tied else "")
                       + (f" (best average rank: {top['recipe']}, {top['average_rank']:.2f})." if place > 1 else "."))
        each = each_all[each_all["setup"] == setup] if len(each_all) else each_all
        if len(each) and (sentence := each_sentence(each, subject)):
            out.append(prefix + sentence)
        losses = v[v["subject_mean_pct"] < v["other_mean_pct"]] if len(v) else v
        if len(losses):
            sep = losses[losses["verdict"].str.startswith("separated")]
            within = losses[losses["verdict"].str.startswith("within noise")]
            untestable = len(losses) - len(sep) - len(within)
            out.append(f"{prefix}Where another recipe's mean is higher ({_columns(len(losses))}), the gap to {subject} "
                       f"is separated in {len(sep)}" + (f" ({_gaps(sep)})" if len(sep) else "")
                       + f", within noise in {len(within)}"
                       + (f" ({_gaps(within, True, int(v['p_value'].notna().sum()))})" if len(within) else "")
                       + (f", not testable in {untestable} (fewer than two paired seeds)" if untestable else "") + ".")
        s = table[table["setup"] == setup]
        dense = s[[_is_dense(x) for x in s["recipe"]]]
        pruned = _pruned(s)
        if len(dense) and len(pruned):
            top_target = pruned["target_sparsity"].max()
            best = pruned[pruned["target_sparsity"] == top_target].sort_values("mean_pct").iloc[-1]
            out.append(f"{prefix}Dense reaches {dense['mean_pct'].iloc[0]:.1f}%; at {100 * top_target:g}% sparsity the "
                       f"best pruned mean is {best['recipe']}'s {best['mean_pct']:.1f}% "
                       f"({best['mean_pct'] - dense['mean_pct'].iloc[0]:+.1f} pp).")
    chance = at_chance(df)
    if len(chance):
        parts = [f"{label} {int(g['at_chance'].sum())} of {len(g)} at {100 * t:g}%"
                 for (label, t), g in chance.groupby(["recipe", "target_sparsity"], sort=False) if g["at_chance"].any()]
        if parts:
            out.append("At chance accuracy (at most 1/classes + 0.5 pp: the network answers one class): "
                       + "; ".join(parts) + ".")
    out += identical_masks_notes(df)
    collapse = layer_collapse(df)
    completed = _pruned(_expanded(df))
    for label in sorted(set(completed["recipe"]), key=_recipe_order) if len(completed) else []:
        mine = collapse[collapse["recipe"] == label]
        runs = completed[completed["recipe"] == label]
        if len(mine):
            layers = ", ".join(sorted(set(mine["layer"])))
            targets = ", ".join(f"{100 * t:g}%" for t in sorted(set(mine["target_sparsity"])))
            empty = int((mine["kept"] == 0).sum())
            out.append(f"{label}: {mine['run_id'].nunique()} of {len(runs)} runs left a layer with fewer kept weights "
                       f"than outputs ({layers}; at {targets})"
                       + (f"; {empty} of those layers kept no weight at all." if empty else "."))
    if len(completed) and collapse.empty:
        out.append("No run's final mask left any layer with fewer kept weights than outputs.")
    return out


def _shown_path(path) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(*p.parts[-2:])) if len(p.parts) >= 2 else str(p)


def _sweep_meta(out_dir: Path) -> dict:
    """sweep.json's grid and name (the folder's name when the sweep gave none or there is no sweep.json), and
    the sweep's own folder: ``out`` in records (`fggp records`), else ``out_dir`` itself."""
    path = out_dir / "sweep.json"
    meta = json.loads(path.read_text()) if path.is_file() else {}
    return {"grid": meta.get("grid"), "name": meta.get("name") or out_dir.name,
            "out": meta.get("out") or _shown_path(out_dir)}


FLOPS_SUFFIX = "_flops"  # docs/results/<sweep>_flops.png beside docs/results/<sweep>.png


def _write_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def sweep_section(out_dir, figure_path: Path, figure_link: str, subject: str = SUBJECT, jobs: int = 2) -> str:
    """One sweep's part of the document; writes its figure to ``figure_path`` (linked as ``figure_link``)."""
    out_dir = Path(out_dir)
    meta = _sweep_meta(out_dir)
    df = load_results(out_dir / "runs")
    name = meta["name"]
    grid = _shown_path(meta["grid"]) if meta.get("grid") else "(grid file unknown)"
    archs = ", ".join(sorted(set(df["arch"].dropna()))) or "?"
    datasets = sorted(set(df["dataset"].dropna()))
    lines = [f"## {name}: {archs} on {', '.join(datasets) or '?'}", "",
             f"Grid `{grid}`; reproduce with `fggp sweep {grid} --jobs {jobs} --out {meta['out']}`. "
             + overview(df), ""]
    lines += ["### What the numbers show", "", *[f"- {x}" for x in findings(df, subject)], ""]
    lines += ["### Final test accuracy (%)", "", TABLE_LEGEND, "", setup_sections(df), ""]
    _write_figure(plot_accuracy_vs_sparsity(df), figure_path)
    lines += [f"![accuracy vs sparsity, {name}]({figure_link})", ""]
    if recorded_flops(df):  # the second view: accuracy against the arithmetic that remains
        flops_path = figure_path.with_name(f"{figure_path.stem}{FLOPS_SUFFIX}{figure_path.suffix}")
        _write_figure(plot_accuracy_vs_flops(df), flops_path)
        link = str(Path(figure_link).with_name(flops_path.name))
        lines += [f"![accuracy vs remaining FLOPs, {name}]({link})", ""]
    lines += ["### Size and speed", "", size_speed_markdown(df, heading="####"), ""]
    vs = subject_vs_best(df, subject)
    if len(vs):
        lines += [f"### {subject} against the best other recipe, paired by seed", "",
                  f"Difference = {subject} − the other recipe with the highest mean in the column; negative: "
                  f"{subject} is behind.", "", subject_markdown(vs), ""]
    each = subject_vs_each(df, subject)
    if len(each):
        lines += [f"### {subject} against every recipe, paired by seed", "",
                  f"Each other pruned recipe of each column against {subject}, over the seeds both ran (the table "
                  f"above tests one recipe per column). Difference = {subject} − the other recipe; "
                  "Benjamini-Hochberg over all the comparisons of a setup.", ""]
        for setup, rows in each.groupby("setup", sort=False):
            if each["setup"].nunique() > 1:
                lines += [f"#### {setup}", ""]
            lines += [each_markdown(rows), ""]
    kept = layer_kept(df)
    if not kept.empty:
        lines += [f"### Kept weights per layer at {100 * kept.attrs['target']:g}% sparsity", "",
                  "Mean over seeds, [min, max] in brackets; the header gives each layer's outputs and size.", "",
                  markdown_table(kept), ""]
    lines += ["### Layer collapse", "", "Runs whose final mask left a layer with fewer kept weights than the "
              "layer has outputs (some outputs then ignore the input).", "", collapse_markdown(df), ""]
    if len(not_applicable(df)):
        lines += ["### Not applicable", "", not_applicable_markdown(df), ""]
    lines += ["### Problems", "", problems_markdown(df), ""]
    view, machine = timing(df)
    if len(machine):
        lines += ["### Time", "", *machine, "", markdown_table(view), ""]
    return "\n".join(lines)


def results_markdown(out_dirs: list, doc_path, command: str, subject: str = SUBJECT) -> str:
    """The whole document; figures land in ``<doc folder>/results/<sweep name>.png``."""
    doc_path = Path(doc_path)
    sections = []
    for out_dir in out_dirs:
        name = _sweep_meta(Path(out_dir))["name"]
        figure = doc_path.parent / "results" / f"{name}.png"
        sections.append(sweep_section(out_dir, figure, f"results/{name}.png", subject))
    head = ["# Results", "",
            f"Generated by `{command}` from the runs' records, not typed: every number, table, figure and "
            "sentence below is computed from the runs' `result.json` files (a sweep's folder, or the compact "
            "copy `fggp records` makes of it, e.g. under docs/results/: result.json, config.json and "
            "metrics.jsonl per run, enough to rebuild this document without rerunning). Final test accuracy at "
            "the end of "
            "training; 95% t intervals over seeds; 'separated' means a paired t test over seeds (same seed = "
            "same initialization and data order) gives p < 0.05 after the Benjamini-Hochberg adjustment over the "
            "columns of its table (p (BH)), 'within noise' that it does not. See "
            "docs/report.md for how to read the tables.", ""]
    return "\n".join(head + sections)


def check_results_inputs(out_dirs: list, doc_path, subject: str = SUBJECT) -> Path:
    """Refuse, before any aggregation, what would give a wrong or half-written document: no sweep, a sweep folder
    without runs, the same folder twice (after resolving paths) or two sweeps of one name (their figures would
    overwrite each other), an ``out`` that is a directory or lies in a folder that does not exist or is not
    writable, and a ``subject`` that is not a recipe of the runs. Returns ``doc_path`` as a Path."""
    if not out_dirs:
        raise ValueError("sweeps: give at least one sweep folder (a sweep's --out directory)")
    doc = Path(doc_path)
    if doc.is_dir():
        raise ValueError(f"out: {str(doc)!r} is a directory; give the Markdown file to write, e.g. {str(doc / 'RESULTS.md')!r}")
    folder = doc.parent
    if not folder.is_dir():
        raise ValueError(f"out: folder {str(folder)!r} does not exist" if not folder.exists()
                         else f"out: {str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"out: folder {str(folder)!r} is not writable")
    figures = folder / "results"
    if figures.exists() and not figures.is_dir():
        raise ValueError(f"out: {str(figures)!r} is a file; the document's figures go into that folder")
    resolved: dict[Path, str] = {}
    names: dict[str, str] = {}
    labels: set[str] = set()
    for d in out_dirs:
        runs = Path(d) / "runs"
        if not runs.is_dir():
            raise ValueError(f"sweeps: {str(d)!r} has no runs/ folder (pass a sweep's --out directory)")
        key = Path(d).resolve()
        if key in resolved:
            raise ValueError(f"sweeps: {resolved[key]!r} and {str(d)!r} are the same folder; give each sweep once")
        resolved[key] = str(d)
        name = _sweep_meta(Path(d))["name"]
        if name in names:
            raise ValueError(f"sweeps: {names[name]!r} and {str(d)!r} are both named {name!r}; their figures would "
                             "overwrite each other (rename one sweep)")
        names[name] = str(d)
        if not has_runs(runs):
            raise ValueError(f"sweeps: {str(d)!r} holds no runs (runs/ has no run folder and there is no sweep.json)")
        df = load_results(runs)
        labels |= {_label(r, v) for r, v in zip(df["recipe"], df["variant"]) if isinstance(r, str)}
    if subject not in labels:
        raise ValueError(f"subject: {subject!r} is not a recipe of these runs "
                         f"({', '.join(sorted(labels, key=_recipe_order))})")
    return doc


def write_results(out_dirs: list, doc_path, command: str, subject: str = SUBJECT) -> Path:
    """Check the inputs first (``check_results_inputs``), then write the document (and its figures) atomically."""
    doc_path = check_results_inputs(out_dirs, doc_path, subject)
    text = results_markdown(out_dirs, doc_path, command, subject)
    atomic_write(doc_path, lambda f: f.write(text.encode()))
    return doc_path


__all__ = ["subject_vs_best", "subject_vs_each", "identical_masks", "at_chance", "layer_kept", "timing", "findings", "results_markdown",
           "write_results", "check_results_inputs", "SUBJECT"]
