"""The Train page through Streamlit's AppTest: empty state, launching, watching, stopping."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cifar_core.jobs import queue as job_queue
from cifar_core.jobs import submit_job
from cifar_core.runs.files import read_json
from cifar_core.runs.store import RunWriter, runs_root

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
    for path in job_queue.job_folders(root):  # never leave a job process behind
        job = job_queue.read_job_record(path) or {}
        if job.get("pid") and job_queue.process_alive(path):
            os.killpg(job["pid"], 9)


def test_empty_state_and_form(artifacts):
    app = open_page(artifacts)
    assert not app.exception
    assert app.title[0].value == "Train"
    assert "Queue (0 active)" in texts(app.subheader)
    assert any("No job is queued or running" in text for text in texts(app.info))
    assert app.checkbox(key="train_freeze_base").disabled  # model 1 has no MobileNet base
    app.selectbox(key="train_model").set_value(6).run()
    assert not app.checkbox(key="train_freeze_base").disabled
    assert not app.exception


def test_a_bad_launch_is_refused_with_a_message(artifacts, tmp_path):
    app = open_page(artifacts, data=tmp_path / "missing.tar.gz")
    app.button(key="train_launch").click().run()
    assert not app.exception
    assert any("Not launched" in text and "no such file" in text for text in texts(app.error))
    assert not runs_root(artifacts).exists() or not any(runs_root(artifacts).iterdir())


def test_a_run_started_from_the_cli_shows_up(artifacts):
    writer = RunWriter.create(artifacts, "m1-fine", status="running")  # as execute_run does
    app = open_page(artifacts)
    assert not app.exception
    assert "Queue (1 active)" in texts(app.subheader)
    assert any("started from the CLI" in text for text in texts(app.markdown))
    assert any(writer.run_id in text for text in texts(app.caption))


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
    assert job["arguments"][:3] == ["train", "--model", "1"]
    assert job["arguments"][7:9] == ["--epochs", "500"]

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
    assert any("SIGTERM" in text for text in texts(app.warning))
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
