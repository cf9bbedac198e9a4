"""Everything rich: the model summary, live training progress, error lines, metric and
compare tables. The CLI imports this package; the library never does.

Consoles are created by the caller (`Console()` for stdout, `Console(stderr=True)` for
errors); nothing here forces colour or a terminal, so NO_COLOR and pipes behave.
`format` turns values into text, `tables` prints static output, `progress` the live display.
"""

from trainctl.cli.render.format import format_duration, format_shape, format_value, human_bytes, human_count, mean_std
from trainctl.cli.render.progress import MODES, ExperimentProgressLine, ProgressDisplay
from trainctl.cli.render.tables import (render_compare_table, render_error, render_evaluation_report, render_metrics_table,
                                        render_predictions, render_summary, render_summary_line)

__all__ = [
    "MODES",
    "ExperimentProgressLine",
    "ProgressDisplay",
    "format_duration",
    "format_shape",
    "format_value",
    "human_bytes",
    "human_count",
    "mean_std",
    "render_compare_table",
    "render_error",
    "render_evaluation_report",
    "render_metrics_table",
    "render_predictions",
    "render_summary",
    "render_summary_line",
]
