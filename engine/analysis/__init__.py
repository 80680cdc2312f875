"""Dataset review: find the strategies a model uses for a class across a whole batch of explanations, and
flag the suspicious ones (spectral relevance analysis, SpRAy: Lapuschkin et al. 2019, *Unmasking Clever
Hans predictors and assessing what machines really learn*).

Typical use::

    from engine.analysis import analyze, load_analysis, write_report
    review = analyze("results/", game="preserve")   # saved in results/analysis/
    for entry in review.classes:
        for cluster in entry.flagged:
            print(entry.label, cluster.size, cluster.reasons)
    write_report(review, "review.html")
    again = load_analysis("results/")                # the saved analysis, with the reviewer's notes

:mod:`engine.analysis.core` holds the arithmetic on arrays (:func:`cluster_maps`), :mod:`.results` the batch
folders and saved analyses, :mod:`.report` the HTML report and :mod:`.bench` the planted Clever-Hans benchmark
and the scale measurement. Needs scikit-learn (and SciPy, which it brings); no Qt.
"""

from __future__ import annotations

from .core import AnalysisError, ClusterStats, MapClusters, ReducedMaps, cluster_maps, cluster_reduced, eigengap
from .report import analysis_report, write_report
from .results import (
    ANALYSIS_FOLDER,
    AnalysisCancelled,
    ClassAnalysis,
    DatasetAnalysis,
    DatasetAnalysisError,
    MapItem,
    analyze,
    class_summary,
    find_analysis,
    join_notes,
    load_analysis,
    read_evidence,
    save_analysis,
    save_notes,
)

__all__ = [
    "ANALYSIS_FOLDER",
    "AnalysisCancelled",
    "AnalysisError",
    "ClassAnalysis",
    "ClusterStats",
    "DatasetAnalysis",
    "DatasetAnalysisError",
    "MapClusters",
    "MapItem",
    "ReducedMaps",
    "analysis_report",
    "analyze",
    "class_summary",
    "cluster_maps",
    "cluster_reduced",
    "eigengap",
    "find_analysis",
    "join_notes",
    "load_analysis",
    "read_evidence",
    "save_analysis",
    "save_notes",
    "write_report",
]
