"""cifar-core bench: model lists, the generated BENCHMARKS.md block, rows from run folders."""

from __future__ import annotations

import pytest

from cifar_core.bench import (
    BenchRow,
    _budget_differs,
    parse_model_list,
    render_markdown,
    reusable_runs,
    update_section,
)
from cifar_core.errors import ConfigError
from cifar_core.runs.store import list_runs
from cifar_core.training.config import make_config


def test_model_lists():
    assert parse_model_list("1-5") == [1, 2, 3, 4, 5]
    assert parse_model_list("1,3, 6") == [1, 3, 6]
    assert parse_model_list("1-3,2,7") == [1, 2, 3, 7]
    for bad in ("", "a", "5-1", "1-"):
        with pytest.raises(ConfigError):
            parse_model_list(bad)


def test_generated_block_is_replaced_and_hand_written_text_kept(tmp_path):
    target = tmp_path / "BENCHMARKS.md"
    update_section(target, "demo", "first\n", title="Demo")
    text = target.read_text() + "\nHand-written analysis.\n"
    target.write_text(text)
    update_section(target, "demo", "second\n", title="Demo")
    update_section(target, "other", "third\n", title="Other")
    final = target.read_text()
    assert "second" in final and "first" not in final and "third" in final
    assert final.count("## Demo") == 1 and "Hand-written analysis." in final
    assert final.index("second") < final.index("Hand-written") < final.index("third")


def test_rows_come_from_run_folders_and_name_their_run(fixture_runs):
    records = [r for r in list_runs(str(fixture_runs)) if r.label_set == "fine"]
    rows = [BenchRow.from_run(r.path, wall_seconds=1.0) for r in records]
    assert {r.model for r in rows} == {1, 5}
    for row, record in zip(rows, records, strict=True):
        assert row.test_top1 == record.metrics["test_top1"] and row.epochs_run == 1
    identity = records[0].config["dataset"]
    text = render_markdown(rows, dataset=identity, profile="quick", seed=42,
                           command="cifar-core bench --models 1,5")
    for record in records:
        assert f"`{record.run_id}`" in text
    assert identity["sha256"][:16] in text and "TensorFlow" in text


def test_reused_runs_are_checked_against_model_labels_profile_seed_and_data(fixture_runs):
    records = {r.model_number: r for r in list_runs(str(fixture_runs)) if r.label_set == "fine"}
    first = records[1]
    identity = first.config["dataset"]
    budget = {"epochs": 1, "batch_size": 32}  # as the fixture runs were trained
    configs = [make_config(n, profile=first.config["profile"], **budget) for n in (1, 2)]
    chosen = reusable_runs([first.run_id], configs, identity, str(fixture_runs))
    assert chosen == {1: first.path}
    with pytest.raises(ConfigError, match="model 5 is not in the list"):
        reusable_runs([records[5].run_id], configs, identity, str(fixture_runs))
    with pytest.raises(ConfigError, match="content hash differs"):
        reusable_runs([first.run_id], configs, {**identity, "sha256": "0" * 64},
                      str(fixture_runs))
    with pytest.raises(ConfigError, match="already reused"):
        reusable_runs([first.run_id, first.run_id], configs, identity, str(fixture_runs))
    with pytest.raises(ConfigError, match="other labels, profile or seed"):
        reusable_runs([first.run_id], [make_config(1, profile="quick", seed=7)], identity,
                      str(fixture_runs))
    for other in ({"epochs": 2}, {"batch_size": 16}, {"validation_fraction": 0.1},
                  {"learning_rate": 0.01}):
        with pytest.raises(ConfigError, match="another training budget or split"):
            reusable_runs([first.run_id], [make_config(1, profile="quick", **{**budget, **other})],
                          identity, str(fixture_runs))

    # Model 7's search picks its learning rate: there the config's rate is not the run's.
    assert not _budget_differs({"learning_rate": 0.01}, make_config(7))
    assert _budget_differs({"learning_rate": 0.01}, make_config(6))
    assert not _budget_differs({}, make_config(6))  # an older run that does not record it

    row = BenchRow.from_run(first.path, None, reused=True)
    assert row.wall_seconds is not None and row.wall_seconds >= 0  # from the run's own times
    text = render_markdown([row], dataset=identity, profile="quick", seed=42,
                           command="cifar-core bench --models 1 --reuse x")
    commit = first.config["environment"]["git"]["commit"]
    assert f"{str(commit)[:7] if commit else '-'} (reused)" in text
    assert "Rows marked *reused*" in text
