"""Aggregate run directories into the paper's comparison, telling signal from noise.

Every run directory is one row, whatever state it is in, and every point a sweep planned but never
started is a ``missing`` row: a comparison that quietly leaves out the runs that crashed looks better
than it is. Points the sweep found infeasible are ``not_applicable`` rows: shown as "n/a", never a
problem. Only completed runs enter the numbers, and the number is the *final* test accuracy (the
best-over-epochs one chooses an epoch by looking at the test set).

Three rules keep the comparison honest:

- Runs that differ in budget or data (epochs, schedule, dataset, lr, ... anything but arch, recipe,
  sparsities, seed and a recipe's own knobs) form separate *setups*: each gets its own table and its
  own ranks, and setups are never ranked against each other. A recipe knob (``rate``) becomes part of
  the row label instead, e.g. ``fggp (rate=0.3)``: a variant of a recipe within one setup.
- Each cell carries a 95% t interval over seeds and its n; cells with n < 3 are marked.
- In each column the best recipe is compared with the runner-up by a paired t test over seeds (same
  seed: same initialization and data order), so a gap within noise is called so.

A fourth check reads the final masks: a layer left with fewer kept weights than it has outputs is
flagged as collapsed (see ``layer_collapse``).

One concept per module, imports flowing one way (each imports only from the ones above it):

- ``loading``: run directories and sweep.json into one DataFrame, setup and variant labels;
- ``setups``: which runs are compared with which (setups, recipe labels, the dense ceiling);
- ``statistics``: means, t intervals (clipped to 0-100% for showing), paired tests, the Benjamini-Hochberg
  adjustment, the seeds a paired test needs for 80% power;
- ``collapse``: layers a final mask left with fewer kept weights than outputs;
- ``identical``: recipes that chose the very same final masks, and why;
- ``efficiency``: per cell, the sparse file against the dense one, FLOPs, the speedup measured by an export;
- ``cells``: every table cell as numbers (table.csv) with rank and best flag, average ranks;
- ``views``: lists of runs (every run, problems, not applicable, the overview line);
- ``tables``: the tables as Markdown;
- ``noise``: the sentence per setup the report opens with: which differences are within noise at this size;
- ``figures``: the figures (accuracy against sparsity, against remaining FLOPs);
- ``checks``: inputs refused in one line before any work (runs_dir, report_dir, a notebook's parameters);
- ``document``: table.md and the report files.
"""

from .cells import CLIP_MARK, COLLAPSE_MARK, EMPTY_CELL, FEW_MARK, NA_CELL, TABLE_CSV_COLUMNS, average_rank
from .checks import check_parameters, check_report_dir, check_runs_dir
from .collapse import COLLAPSE_COLUMNS, collapsed_layers, layer_collapse
from .document import FIGURE_NAME, FLOPS_FIGURE_NAME, REPORT_FILES, report_markdown, summary_with_size, write_report
from .efficiency import NOT_RECORDED, SIZE_COLUMNS, file_size, recorded_flops, size_speed, size_text, speed_text, times
from .figures import plot_accuracy_vs_flops, plot_accuracy_vs_sparsity
from .identical import identical_masks, identical_reason
from .loading import (COLUMNS, EXPORT_JSON, KEY_FIELDS, NO_RUNS_HINT, NOT_APPLICABLE, ONE_SETUP, PRUNING_ONLY,
                      RECIPE_KNOBS, SHOWN_SETUP, SPARSE_FILE, STATUS_ORDER, has_runs, load_results, read_export)
from .setups import SETTING, setups
from .noise import noise_sentence, noise_sentences, seeds_clause
from .statistics import (ACCURACY_RANGE, ALPHA, COMPARISON_COLUMNS, FEW_SEEDS, PAIRED_COLUMNS, POWER, SEEDS_SHOWN,
                         STAT_COLUMNS, SUMMARY_COLUMNS, accuracy_by_seed, adjust_for_columns, clipped_interval,
                         column_runs, comparisons, detectable_gap, paired_comparison, paired_power, ranking_means,
                         seeds_needed, summary, t_interval)
from .tables import (SEEDS_COLUMN, SIZE_LEGEND, TABLE_LEGEND, collapse_markdown, column_title, comparisons_markdown, format_cell,
                     identical_masks_notes, markdown_table, not_applicable_markdown, paired_columns, paper_tables,
                     problems_markdown, runs_markdown, seeds_text, setup_sections, size_speed_markdown)
from .versus import (SUBJECT, each_markdown, each_sentence, recipes_of, resolve_subject, subject_markdown,
                     subject_vs_best, subject_vs_each, versus_markdown)
from .views import (PROBLEM_COLUMNS, code_sentence, code_versions, not_applicable, overview, problems, runs_view,
                    short_id)

__all__ = ["load_results", "summary", "t_interval", "paired_comparison", "comparisons", "adjust_for_columns",
           "paper_tables", "average_rank", "collapsed_layers", "layer_collapse", "problems", "not_applicable",
           "runs_view", "overview", "code_versions", "code_sentence", "setups", "plot_accuracy_vs_sparsity", "markdown_table", "setup_sections",
           "comparisons_markdown", "paired_columns", "collapse_markdown", "problems_markdown", "runs_markdown",
           "not_applicable_markdown", "report_markdown", "write_report", "format_cell", "column_title",
           "column_runs", "accuracy_by_seed", "short_id", "plot_accuracy_vs_flops", "size_speed",
           "size_speed_markdown", "size_text", "speed_text", "file_size", "times", "recorded_flops",
           "summary_with_size", "read_export", "has_runs", "identical_masks", "identical_reason",
           "identical_masks_notes", "check_parameters", "check_runs_dir", "check_report_dir", "paired_power",
           "seeds_needed", "detectable_gap", "clipped_interval", "seeds_text", "seeds_clause", "noise_sentence", "ranking_means",
           "SUBJECT", "recipes_of", "resolve_subject", "subject_vs_best", "subject_vs_each", "each_markdown", "each_sentence", "subject_markdown",
           "versus_markdown",
           "noise_sentences", "PAIRED_COLUMNS", "POWER", "SEEDS_SHOWN", "ACCURACY_RANGE", "CLIP_MARK", "SEEDS_COLUMN",
           "COLUMNS", "SETTING", "STAT_COLUMNS", "SUMMARY_COLUMNS", "TABLE_CSV_COLUMNS", "COMPARISON_COLUMNS",
           "COLLAPSE_COLUMNS", "PROBLEM_COLUMNS", "NOT_APPLICABLE", "STATUS_ORDER", "KEY_FIELDS", "RECIPE_KNOBS",
           "PRUNING_ONLY", "SHOWN_SETUP", "ONE_SETUP", "EMPTY_CELL", "NA_CELL", "FEW_SEEDS", "FEW_MARK",
           "COLLAPSE_MARK", "ALPHA", "NO_RUNS_HINT", "FIGURE_NAME", "FLOPS_FIGURE_NAME", "REPORT_FILES",
           "TABLE_LEGEND", "SIZE_LEGEND", "SIZE_COLUMNS", "NOT_RECORDED", "EXPORT_JSON", "SPARSE_FILE"]
