"""The training-curves figure: what it plots from history rows, including partial ones."""

from __future__ import annotations

from cifar_core.charts.training import training_curves_figure
from cifar_core.runs.store import RunWriter, read_history


def traces(figure) -> dict[tuple[str, str], object]:
    """Traces by (panel x-axis, legend name): ('x', ...) is loss, ('x2', ...) accuracy."""
    return {(trace.xaxis, trace.name): trace for trace in figure.data}


def test_loss_and_accuracy_panels_with_training_and_validation(tmp_path):
    writer = RunWriter.create(tmp_path, "m1-fine", status="running")
    writer.write_history([
        {"epoch": 1, "loss": 4.2, "accuracy": 0.05, "val_loss": 4.0, "val_accuracy": 0.07,
         "seconds": 1.5},
        {"epoch": 2, "loss": 3.1, "accuracy": 0.21, "val_loss": 3.4, "val_accuracy": 0.18,
         "seconds": 1.2},
    ])
    figure = training_curves_figure(read_history(writer.path), title="model 1")
    by_panel = traces(figure)
    assert set(by_panel) == {("x", "training"), ("x", "validation"), ("x2", "training"),
                             ("x2", "validation")}
    assert list(by_panel["x", "training"].y) == [4.2, 3.1]
    assert list(by_panel["x", "validation"].y) == [4.0, 3.4]
    assert list(by_panel["x2", "training"].y) == [0.05, 0.21]
    assert list(by_panel["x2", "validation"].y) == [0.07, 0.18]
    assert list(by_panel["x2", "validation"].x) == [1, 2]
    assert by_panel["x", "validation"].line.dash == "dash"
    # One legend entry per series, shared by both panels.
    assert sorted(t.name for t in figure.data if t.showlegend) == ["training", "validation"]
    assert figure.layout.title.text == "model 1"
    assert figure.layout.yaxis2.tickformat == ".0%"
    assert [a.text for a in figure.layout.annotations] == ["Loss", "Accuracy"]


def test_rows_out_of_order_missing_and_non_finite_values():
    rows = [
        {"epoch": 3.0, "loss": 2.0, "accuracy": 0.4, "val_loss": float("nan"),
         "val_accuracy": 0.3},
        {"epoch": 1.0, "loss": 4.0, "accuracy": 0.1, "val_loss": None, "val_accuracy": 0.1},
        {"epoch": None, "loss": 9.9},  # no epoch: skipped
        {"epoch": 2.0, "loss": "3.0", "accuracy": 0.2, "val_loss": 3.5, "val_accuracy": ""},
    ]
    by_panel = traces(training_curves_figure(rows))
    assert list(by_panel["x", "training"].x) == [1, 2, 3]
    assert list(by_panel["x", "training"].y) == [4.0, 3.0, 2.0]
    assert list(by_panel["x", "validation"].y) == [None, 3.5, None]  # gaps, not zeros
    assert list(by_panel["x2", "validation"].y) == [0.1, None, 0.3]


def test_no_validation_column_draws_training_only():
    rows = [{"epoch": 1, "loss": 1.0, "accuracy": 0.5}]
    figure = training_curves_figure(rows)
    assert {t.name for t in figure.data} == {"training"}
    assert len(figure.data) == 2


def test_empty_history_says_no_epoch_yet():
    figure = training_curves_figure([])
    assert len(figure.data) == 0
    assert [a.text for a in figure.layout.annotations] == ["Loss", "Accuracy",
                                                           "No epoch has finished yet"]
