"""Report figures: layout helpers that keep labels and panels readable."""

from __future__ import annotations

import pandas as pd

from workflow_scripts.report.alignment import label_offsets
from workflow_scripts.report.rollout import errors_by_turn_figure


def test_labels_of_close_points_get_different_offsets_and_far_ones_keep_the_first():
    offsets = label_offsets([1.26, 1.29, 1.32, 1.32, 1.51, 1.70], [0.0] * 6)
    assert len(set(offsets[:4])) == 4  # four labels within a label's width of each other
    assert offsets[4] == offsets[5] == 3
    assert label_offsets([1.0, 2.0], [0.0, 1.0]) == [3, 3]


def test_errors_by_turn_wraps_many_runs_into_rows_of_four():
    run = pd.DataFrame({
        "turn": [1, 1, 2], "verdict": ["correct", "syntax_error", "empty_result"],
        "correct": [True, False, False],
    })  # fmt: skip
    fig = errors_by_turn_figure({f"run{i}": run for i in range(7)})
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 7
    assert len(fig.axes) == 8 and fig.get_size_inches()[0] < 14
