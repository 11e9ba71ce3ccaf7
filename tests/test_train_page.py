"""The Train page through Streamlit's AppTest: empty state, launching, watching, stopping."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cifar_core.jobs import locks as job_locks
from cifar_core.jobs import records as job_records
from cifar_core.jobs import submit_job
from cifar_core.models.specs import SPECS
from cifar_core.runs.files import atomic_write_json, read_json
from cifar_core.runs.store import RunWriter, runs_root
from cifar_core.training.config import PROFILES, freeze_base_effect

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "train.py")


def open_page(artifacts: Path, data: Path | str | None = None) -> AppTest:
    """A fresh browser session on the page (a reload is just another one of these)."""
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.session_state["artifacts_dir"] = str(artifacts)
    if data is not None:
        app.session_state["data_source"] = str(data)
    return app.run()


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def texts(elements) -> list[str]:
    return [element.value for element in elements]


@pytest.fixture
def artifacts(tmp_path):
    root = tmp_path / "artifacts"
    yield root
    for path in job_records.job_folders(root):  # never leave a job process behind
        job = job_records.read_job_record(path) or {}
        if job.get("pid") and job_locks.process_alive(path):
            os.killpg(job["pid"], 9)


def test_empty_state_and_form(artifacts, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no CIFAR-100 here
    app = open_page(artifacts)
    assert not app.exception
    # without the data, the page says so before anyone launches a job that cannot work
    assert any("**Overview** page" in text for text in texts(app.warning))
    assert app.title[0].value == "Train"
    assert "Queue (0 active)" in texts(app.subheader)
    assert any("No job is queued or running" in text for text in texts(app.info))
    assert app.checkbox(key="train_freeze_base").disabled  # model 1 has no MobileNet base
    app.selectbox(key="train_model").set_value(6).run()
    assert not app.checkbox(key="train_freeze_base").disabled
    assert not app.exception


def keys(widgets) -> list[str]:
    return [widget.key for widget in widgets]


def test_model7_shows_its_search_settings_with_the_profiles_values(artifacts, tiny_cifar100,
                                                                    jobs_without_processes):
    app = open_page(artifacts, data=tiny_cifar100)
    assert "train_search_trials" not in keys(app.number_input)  # model 1 searches nothing
    app.selectbox(key="train_model").set_value(7).run()
    assert not app.exception
    quick = PROFILES["quick"]
    for name in ("search_trials", "search_folds", "search_epochs", "grid_epochs",
                 "grid_trials"):
        field = app.number_input(key=f"train_{name}")
        assert field.value is None and field.proto.placeholder == str(quick[name])
        assert "Empty: the profile's value" in field.help
    assert app.selectbox(key="train_search_mode").value is None
    captions = "\n".join(texts(app.caption))
    assert "RandomSearch (4 trials, 2-fold CV)" in captions  # the quick profile's, not 3
    assert "4 trials x 2 folds = 8 trainings of 3 epochs each" in captions

    app.selectbox(key="train_profile").set_value("seed").run()
    assert app.number_input(key="train_search_trials").proto.placeholder == "30"
    assert app.number_input(key="train_search_folds").proto.placeholder == "3"
    assert app.number_input(key="train_grid_trials").proto.placeholder == "all"
    captions = "\n".join(texts(app.caption))
    assert "RandomSearch (30 trials, 3-fold CV)" in captions
    assert "30 trials x 3 folds = 90 trainings of 20 epochs each" in captions

    app.selectbox(key="train_profile").set_value("quick")
    app.number_input(key="train_search_trials").set_value(6)
    app.selectbox(key="train_search_mode").set_value("cached").run()
    assert "6 trials x 2 folds = 12 trainings" in "\n".join(texts(app.caption))
    app.button(key="train_launch").click().run()
    assert not app.exception
    [run_id] = jobs_without_processes
    job = read_json(runs_root(artifacts) / run_id / "job.json")
    assert job["config"]["search_trials"] == 6 and job["config"]["search_mode"] == "cached"
    # left empty: the profile's value, and not an override
    assert job["config"]["search_folds"] == PROFILES["quick"]["search_folds"]
    assert set(job["request"]["overrides"]) == {"search_trials", "search_mode"}
    assert any("quick profile, cached search, 6 trials" in text for text in texts(app.markdown))


def test_freeze_base_and_the_defaults_follow_the_model(artifacts, tiny_cifar100):
    app = open_page(artifacts, data=tiny_cifar100)
    for model in SPECS:
        app.selectbox(key="train_model").set_value(model).run()
        assert not app.exception and not app.warning  # every model's form reads cleanly
        freeze = app.checkbox(key="train_freeze_base")
        effect = freeze_base_effect(model)
        assert freeze.disabled == (effect is None)
        assert freeze.help == effect or "no MobileNet base" in freeze.help
    assert "whole MobileNet base" in freeze.help  # model 8: its fine-tuned part frozen too
    app.selectbox(key="train_profile").set_value("seed").run()  # model 8's own budget
    assert app.number_input(key="train_epochs").proto.placeholder == str(SPECS[8].budget.epochs)
    assert not any("this job:" in text for text in texts(app.caption))
    app.selectbox(key="train_profile").set_value("quick").run()
    assert any(f"this job: 3 epochs instead of {SPECS[8].budget.epochs}" in text
               for text in texts(app.caption))


def _finished_job(artifacts, tiny_cifar100, top1: float, **overrides) -> str:
    run_id = submit_job(artifacts, model=1, data=str(tiny_cifar100), overrides=overrides)
    path = runs_root(artifacts) / run_id
    atomic_write_json(path / "metrics.json", {"test_top1": top1, "test_top5": 0.9,
                                              "test_superclass_top1": 0.6,
                                              "label_set": "fine"})
    RunWriter(path).set_status("completed")
    return run_id


def test_job_cards_name_their_overrides_and_show_their_accuracy(artifacts, tiny_cifar100,
                                                               jobs_without_processes):
    for index in range(6):
        _finished_job(artifacts, tiny_cifar100, top1=0.1 + index / 100)
    _finished_job(artifacts, tiny_cifar100, top1=0.45, epochs=2, patience=0)  # the newest
    app = open_page(artifacts, data=tiny_cifar100)
    assert not app.exception
    titles = [text for text in texts(app.markdown) if text.startswith("**Model")]
    assert len(titles) == 5  # the newest five; the others behind the toggle
    assert "quick profile, 2 epochs, no early stopping" in titles[0]
    assert "quick profile ·" in titles[1]
    assert "**test top-1 45.0% · superclass 60.0%**" in texts(app.markdown)
    older = app.toggle(key="train_show_older")
    assert older.label == "Show 2 older jobs" and not older.value
    older.set_value(True).run()
    titles = [text for text in texts(app.markdown) if text.startswith("**Model")]
    assert len(titles) == 7
    assert "**test top-1 10.0% · superclass 60.0%**" in texts(app.markdown)  # the oldest


def test_the_progression_button_queues_it_once(artifacts, jobs_without_processes):
    app = open_page(artifacts)
    app.button(key="train_progression").click().run()
    assert not app.exception
    [queued] = texts(app.success)
    assert queued.startswith("Queued 5 training jobs (models 1-5, quick profile): ")
    app.button(key="train_progression").click().run()
    assert not app.exception
    assert not app.success
    [again] = texts(app.info)
    assert again.startswith("The quick progression (models 1-5) is already queued")
    assert len(job_records.job_folders(artifacts)) == 5 == len(jobs_without_processes)


def test_a_bad_launch_is_refused_with_a_message(artifacts, tmp_path):
    app = open_page(artifacts, data=tmp_path / "missing.tar.gz")
    app.button(key="train_launch").click().run()
    assert not app.exception
    assert any("Not launched" in text and "no such file" in text for text in texts(app.error))
    assert not runs_root(artifacts).exists() or not any(runs_root(artifacts).iterdir())


def test_a_run_started_from_the_cli_shows_up(artifacts):
    writer = RunWriter.create(artifacts, "m8-fine", status="running")  # as execute_run does
    writer.report_phase("features", 0, 120000, unit="images")  # model 8's feature pass
    time.sleep(0.2)
    writer.report_phase("features", 24250, 120000, unit="images")
    writer.flush()
    app = open_page(artifacts)
    assert not app.exception
    assert "Queue (1 active)" in texts(app.subheader)
    assert any("started from the CLI" in text for text in texts(app.markdown))
    assert any(writer.run_id in text for text in texts(app.caption))
    # A phase that is not an epoch fills the bar too, with its count and an ETA.
    [progress] = app.get("progress")
    assert progress.proto.value == round(100 * 24250 / 120000)
    assert progress.proto.text.startswith(
        "computing the frozen base's features · 24,250/120,000 images · ETA ")
    assert "not known" not in progress.proto.text


@pytest.mark.slow
def test_launch_watch_and_stop_a_job(artifacts, tiny_cifar100):
    app = open_page(artifacts, data=tiny_cifar100)
    app.number_input(key="train_epochs").set_value(500)
    app.number_input(key="train_patience").set_value(0)  # no early stop: it runs until stopped
    app.button(key="train_launch").click().run()
    assert not app.exception
    [message] = texts(app.success)
    run_id = message.split("`")[1]
    run_file = runs_root(artifacts) / run_id / "run.json"
    job = read_json(runs_root(artifacts) / run_id / "job.json")
    assert job["config"]["model"] == 1 and job["config"]["epochs"] == 500
    assert job["request"]["overrides"] == {"epochs": 500, "patience": 0}

    wait_until(lambda: (read_json(run_file).get("progress") or {}).get("last"), 90,
               "the job to finish its first epoch")
    app = open_page(artifacts, data=tiny_cifar100)  # a reload: all state is in the folder
    assert not app.exception
    assert "Queue (1 active)" in texts(app.subheader)
    [progress] = app.get("progress")
    assert "epoch" in progress.proto.text and "/500" in progress.proto.text
    assert len(app.get("plotly_chart")) == 1  # the live loss/accuracy curves
    log = "\n".join(block.value for block in app.code)
    assert "epoch 1/500" in log

    app.button(key=f"stop-{run_id}").click().run()
    assert not app.exception
    record = read_json(run_file)
    assert record["status"] == "stopped", record  # the error says why if not
    # Where it stopped, in words (not the signal's name)
    assert any(text.startswith("Stopped at epoch ") and " of 500" in text
               for text in texts(app.warning)), texts(app.warning)
    assert "Queue (0 active)" in texts(app.subheader)
    with pytest.raises(ProcessLookupError):
        os.killpg(job["pid"], 0)


@pytest.mark.slow
def test_a_failed_job_shows_its_error(artifacts, tmp_path):
    not_data = tmp_path / "not-a-data-set"
    not_data.mkdir()
    run_id = submit_job(artifacts, model=1, data=str(not_data), overrides={"epochs": 1})
    run_file = runs_root(artifacts) / run_id / "run.json"
    wait_until(lambda: read_json(run_file)["status"] == "failed", 90, "the job to fail")
    app = open_page(artifacts)
    assert not app.exception
    errors = texts(app.error)
    assert any(text.startswith("Failed:") and "no images under train" in text
               for text in errors), errors
    assert any("error: " in block.value for block in app.code)  # the log tail, expanded
