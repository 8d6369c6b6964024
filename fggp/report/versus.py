"""One recipe (the subject, FGGP by default) against the others, paired by seed: against the best other recipe
of each column, and against every other recipe, over the seeds each pair shares.

Why: "best" and "runner-up" say how the top of a column stands; a reader of a method asks where *it* wins or
loses, and a recipe run with 8 seeds beside one with 3 is only comparable over the seeds both have. The report
(table.md, notebook 03) and the evidence document (``fggp results``) both show these.
"""

from __future__ import annotations

import pandas as pd

from .setups import SETTING, _expanded, _label, _pruned, _recipe_order, setups
from .statistics import (PAIRED_COLUMNS, accuracy_by_seed, adjust_for_columns, column_runs, paired_comparison,
                         ranking_means, summary)
from .tables import column_title, markdown_table, paired_columns

SUBJECT = "fggp"
VERSUS_COLUMNS = ["setup", *SETTING, "subject", "other", "subject_mean_pct", "other_mean_pct", *PAIRED_COLUMNS]


def recipes_of(df: pd.DataFrame) -> list[str]:
    """The recipe labels of these runs (a knob's variant included, as the tables name them)."""
    return sorted({_label(r, v) for r, v in zip(df["recipe"], df["variant"]) if isinstance(r, str)},
                  key=_recipe_order)


def resolve_subject(df: pd.DataFrame, subject: str | None = None) -> str | None:
    """The recipe the report compares with every other: ``subject`` when it is one of these runs' recipes (else a
    one-line error naming the field and the recipes there are); None asks for FGGP where it ran, and gives None
    where it did not (a sweep of other recipes has no subject)."""
    labels = recipes_of(df)
    if subject is None:
        return SUBJECT if SUBJECT in labels else None
    if subject not in labels:
        raise ValueError(f"subject: {subject!r} is not a recipe of these runs ({', '.join(labels) or 'none'})")
    return subject


def subject_vs_best(df: pd.DataFrame, subject: str = SUBJECT) -> pd.DataFrame:
    """Per setup and column where ``subject`` ran: ``subject`` against the best *other* pruned recipe, paired by
    seed; ``diff`` is subject minus other, so negative means it lost. "Best" is ranked as the table ranks
    (``ranking_means``: over the seeds all of the column's recipes have, where they differ), and where the two
    have different seeds the means shown are over the seeds they share, the ones the test pairs."""
    s, done = _pruned(summary(df)), _expanded(df)
    records = []
    for setup in setups(df):
        for col, cell in s[s["setup"] == setup].groupby(SETTING, sort=True):
            if subject not in set(cell["recipe"]) or len(cell) < 2:
                continue
            runs = column_runs(done, setup, col)
            ranking, _ = ranking_means(cell, runs)
            other = min((label for label in ranking.index if label != subject), key=lambda x: (-ranking[x], x))
            mine, theirs = accuracy_by_seed(runs, subject), accuracy_by_seed(runs, other)
            test = paired_comparison(mine, theirs)
            mean = cell.set_index("recipe")["mean_pct"]
            if set(mine.index) != set(theirs.index):
                seeds = sorted(set(mine.index) & set(theirs.index))
                mean = pd.Series({subject: mine[seeds].mean(), other: theirs[seeds].mean()})
            records.append({"setup": setup, **dict(zip(SETTING, col)), "subject": subject,
                            "subject_mean_pct": mean[subject], "other": other, "other_mean_pct": mean[other],
                            **{k: test[k] for k in PAIRED_COLUMNS}})
    return adjust_for_columns(pd.DataFrame(records))


def subject_vs_each(df: pd.DataFrame, subject: str = SUBJECT) -> pd.DataFrame:
    """``subject`` against every other pruned recipe in every column where both ran, paired over the seeds
    they share. Why: the best-other comparison tests one pair per column; a recipe run with more seeds is
    tested against each of the others on every seed the two share here. ``diff`` is subject minus other; Benjamini-Hochberg over all of a setup's comparisons."""
    s, done = _pruned(summary(df)), _expanded(df)
    records = []
    for setup in setups(df):
        for col, cell in s[s["setup"] == setup].groupby(SETTING, sort=True):
            if subject not in set(cell["recipe"]):
                continue
            runs = column_runs(done, setup, col)
            mine = accuracy_by_seed(runs, subject)
            for other in sorted(set(cell["recipe"]) - {subject}, key=_recipe_order):
                theirs = accuracy_by_seed(runs, other)
                seeds = sorted(set(mine.index) & set(theirs.index))
                records.append({"setup": setup, **dict(zip(SETTING, col)), "subject": subject, "other": other,
                                "subject_mean_pct": mine[seeds].mean(), "other_mean_pct": theirs[seeds].mean(),
                                **{k: v for k, v in paired_comparison(mine, theirs).items() if k in PAIRED_COLUMNS}})
    each = adjust_for_columns(pd.DataFrame(records, columns=VERSUS_COLUMNS))
    if len(each):  # the adjustment runs over comparisons here, not over columns
        each["verdict"] = each["verdict"].str.replace(" columns (", " comparisons (", regex=False)
    return each


def each_markdown(c: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "column": [column_title(t) for t in c[SETTING].itertuples(index=False, name=None)],
        "other": c["other"], "pairs": c["pairs"],
        f"{c['subject'].iloc[0]} (paired seeds)": c["subject_mean_pct"].map(lambda x: f"{x:.2f}"),
        "other (paired seeds)": c["other_mean_pct"].map(lambda x: f"{x:.2f}"),
        **paired_columns(c, "difference (pp)", p_format=".3g"),
    })
    return markdown_table(view, index=False)


def each_sentence(c: pd.DataFrame, subject: str = SUBJECT) -> str | None:
    """One sentence over ``subject_vs_each``'s rows of one setup: where the subject is behind or ahead by a
    separated margin, and how many comparisons are within noise."""
    tested = c[c["p_value"].notna()]
    if tested.empty:
        return None
    sep = tested[tested["verdict"].str.startswith("separated")]
    behind, ahead = sep[sep["diff_mean_pct"] < 0], sep[sep["diff_mean_pct"] > 0]

    def listed(rows):
        return "; ".join(f"{column_title(t)}: {o} by {abs(d):.2f} pp over {n} seeds (p (BH) = {q:.3g})"
                         for t, o, d, n, q in zip(rows[SETTING].itertuples(index=False, name=None), rows["other"],
                                                  rows["diff_mean_pct"], rows["pairs"], rows["p_adjusted"]))

    parts = [f"Paired with every other recipe over the seeds both ran ({len(tested)} comparisons, Benjamini-Hochberg "
             f"over all of them), {subject} is behind by a separated margin in {len(behind)}"
             + (f" ({listed(behind)})" if len(behind) else ""),
             f"ahead by a separated margin in {len(ahead)}" + (f" ({listed(ahead)})" if len(ahead) else ""),
             f"and within noise in {len(tested) - len(sep)}"]
    alone = tested[tested["verdict"].str.contains("alone")]
    if len(alone):
        parts[-1] += (f" ({len(alone)} of them with p < 0.05 on its own: "
                      + "; ".join(f"{column_title(t)}: {subject} {'ahead of' if d > 0 else 'behind'} {o} by {abs(d):.2f} pp "
                                  f"over {n} seeds, p = {p:.3g}, adjusted {q:.3g}"
                                  for t, o, d, n, p, q in zip(alone[SETTING].itertuples(index=False, name=None),
                                                              alone["other"], alone["diff_mean_pct"], alone["pairs"],
                                                              alone["p_value"], alone["p_adjusted"])) + ")")
    return ", ".join(parts) + "."


def subject_markdown(c: pd.DataFrame) -> str:
    if c.empty:
        return "(the subject recipe has no column with another pruned recipe)"
    view = pd.DataFrame({
        "column": [column_title(t) for t in c[SETTING].itertuples(index=False, name=None)],
        c["subject"].iloc[0]: c["subject_mean_pct"].map(lambda x: f"{x:.1f}"),
        "best other": [f"{o} ({m:.1f})" for o, m in zip(c["other"], c["other_mean_pct"])],
        **paired_columns(c, "difference (pp)", p_format=".3g"),
    })
    return markdown_table(view, index=False)


def versus_markdown(df: pd.DataFrame, subject: str = SUBJECT, heading: str = "###") -> str:
    """The every-recipe comparison for reading: per setup a table and its sentence; empty where ``subject``
    has no column with another pruned recipe."""
    each = subject_vs_each(df, subject)
    if each.empty:
        return ""
    lines = [f"Each other pruned recipe of each column against {subject}, over the seeds both ran. Difference = "
             f"{subject} − the other recipe; Benjamini-Hochberg over all the comparisons of a setup.", ""]
    for setup, rows in each.groupby("setup", sort=False):
        if each["setup"].nunique() > 1:
            lines += [f"{heading} {setup}", ""]
        lines += [each_markdown(rows), ""]
        if sentence := each_sentence(rows, subject):
            lines += [sentence, ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["SUBJECT", "recipes_of", "resolve_subject", "subject_vs_best", "subject_vs_each", "each_markdown", "each_sentence", "subject_markdown",
           "versus_markdown"]
