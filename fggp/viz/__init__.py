"""Figures: every plot the notebooks show lives here."""
