"""``bench report``: tables (Markdown, CSV, LaTeX), statistics, figures and an HTML page from the results store.

Modules: ``tables`` (pandas frames and formatted rows), ``stats`` (per-case Dice, Wilcoxon, Pareto front), ``plots``
(matplotlib figures returning their data), ``writers`` (files), ``build`` (puts them together).
"""

from bench.report.build import FORMATS, GroupReport, Report, build_report

__all__ = ["FORMATS", "GroupReport", "Report", "build_report"]
