"""``bench report``: tables (Markdown, CSV, LaTeX), statistics, figures and an HTML page from the results store.

Modules: ``tables`` (pandas frames and formatted rows), ``stats`` (per-case Dice, Wilcoxon, Pareto front), ``plots``
(matplotlib figures returning their data), ``ablation`` (tables and figures against swept arguments), ``content``
(what a report holds), ``writers`` (files), ``build`` (puts them together).
"""

from bench.report.build import FORMATS, build_report
from bench.report.content import GroupReport, Report

__all__ = ["FORMATS", "GroupReport", "Report", "build_report"]
