"""TensorBoard event files and the MLflow mirror of run folders, read back by each tool.

The TensorBoard tests write events for copies of the fixture runs and read them with
TensorBoard's own event reader. The MLflow tests start one real ``mlflow server`` (SQLite
backend, local artifact root, a free loopback port) for the module, sync copies of the
fixture runs into it through the CLI, and read them back with ``MlflowClient``; each test
uses its own experiment so they do not see each other's runs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from processes import stop_process

from cifar_core.cli import EXIT_PARTIAL, main
from cifar_core.runs.params import flat_params
from cifar_core.runs.tensorboard import FINAL_METRICS, HISTORY_SCALARS, write_tensorboard

RUN_IDS = ("20261202-025850-m1-fine", "20261202-025853-m5-fine", "20261202-025855-m1-coarse")
SERVER_START_SECONDS = 120


@pytest.fixture
def artifacts(tmp_path, fixture_runs) -> Path:
    """A private artifacts folder with a copy of the fixture runs (free to change)."""
    shutil.copytree(fixture_runs / "runs", tmp_path / "artifacts" / "runs")
    return tmp_path / "artifacts"


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path -> SHA-256: to show nothing changed."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", encoding="utf-8", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# -- TensorBoard -------------------------------------------------------------------------------

def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    accumulator = EventAccumulator(str(run_dir / "tensorboard"),
                                   size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    scalars = {tag: [(event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
                     for event in accumulator.Tensors(tag)]
               for tag in accumulator.Tags()["tensors"] if not tag.startswith("_hparams_")}
    return accumulator, scalars


def test_tensorboard_events_hold_the_history_hparams_and_test_metrics(artifacts):
    from tensorboard.plugins.hparams import metadata

    run_dir = artifacts / "runs" / RUN_IDS[1]
    write_tensorboard(run_dir)
    accumulator, scalars = _events(run_dir)
    history = _history(run_dir)
    for column in HISTORY_SCALARS:
        assert scalars[column] == [(int(row["epoch"]), pytest.approx(row[column], rel=1e-6))
                                   for row in history]
    metrics = _json(run_dir / "metrics.json")
    last = int(history[-1]["epoch"])
    for name in FINAL_METRICS:
        assert scalars[name] == [(last, pytest.approx(metrics[name], rel=1e-6))]
    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    assert start.group_name == RUN_IDS[1]
    hparams = {k: v.number_value if v.HasField("number_value") else
               v.string_value if v.HasField("string_value") else v.bool_value
               for k, v in start.hparams.items()}
    config = _json(run_dir / "config.json")
    assert hparams["model.number"] == 5
    assert hparams["hyperparameters.learning_rate"] == pytest.approx(
        config["hyperparameters"]["learning_rate"])
    assert hparams["labels"] == "fine" and hparams["dataset.sha256"] == \
        config["dataset"]["sha256"]


def test_tensorboard_export_writes_every_run_and_rewrites_without_doubling(artifacts, capsys):
    assert main(["tensorboard-export", "--artifacts", str(artifacts)]) == 0
    assert main(["tensorboard-export", "--artifacts", str(artifacts),
                 "--runs", RUN_IDS[0]]) == 0  # again: replaces, never appends
    for run_id in RUN_IDS:
        run_dir = artifacts / "runs" / run_id
        assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
        _, scalars = _events(run_dir)
        assert [step for step, _ in scalars["loss"]] == \
            [int(row["epoch"]) for row in _history(run_dir)]
    assert not list(artifacts.rglob(".tensorboard-*"))  # no staging folder left behind


def test_tensorboard_export_reports_an_incomplete_run_and_writes_the_others(artifacts,
                                                                            capsys):
    broken = artifacts / "runs" / RUN_IDS[0]
    (broken / "metrics.json").unlink()
    before = _tree(broken)
    code = main(["tensorboard-export", "--artifacts", str(artifacts), "--runs", *RUN_IDS])
    assert code == EXIT_PARTIAL
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"error: {RUN_IDS[0]}: metrics.json: missing"]
    assert _tree(broken) == before
    for run_id in RUN_IDS[1:]:
        assert (artifacts / "runs" / run_id / "tensorboard").is_dir()


def test_the_pipeline_writes_events_and_a_failure_only_warns(tmp_path, monkeypatch):
    """The pipeline's hook (a trained run is checked in tests/test_training.py): a writer
    that fails leaves a warning in the log, not a failed run."""
    from cifar_core import pipeline

    class Writer:
        path, run_id = tmp_path, "r1"

    def fails(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "write_tensorboard", fails)
    lines = []
    pipeline._write_tensorboard(Writer(), lines.append)
    assert lines == ["warning: no TensorBoard events for r1: [Errno 28] No space left on "
                     "device"]
    calls = []
    monkeypatch.setattr(pipeline, "write_tensorboard", calls.append)
    pipeline._write_tensorboard(Writer(), lines.append)
    assert calls == [tmp_path] and len(lines) == 1


# -- MLflow ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server for this module; its URI."""
    pytest.importorskip("mlflow", reason='MLflow not installed: pip install -e ".[mlflow]"')
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    executable = Path(sys.executable).with_name("mlflow")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "mlflow"]
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [*command, "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail("mlflow server exited: "
                            + (root / "server.log").read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up after {SERVER_START_SECONDS} s")
            time.sleep(0.3)
        yield uri
    finally:
        stop_process(process, grace_seconds=15)
        log.close()


@pytest.fixture
def experiment(request) -> str:
    return f"test-{request.node.name}"[:200]


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _mlflow_runs(uri: str, experiment: str) -> dict:
    """Our run id -> the active MLflow run, and a check that no run id appears twice."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client.search_runs([found.experiment_id], max_results=1000)
    ids = [run.data.tags["cifar_core.run_id"] for run in runs]
    assert len(ids) == len(set(ids)), f"duplicated runs in MLflow: {ids}"
    return dict(zip(ids, runs, strict=True))


def _sync(uri, experiment, artifacts, *runs) -> int:
    return main(["mlflow-sync", "--tracking-uri", uri, "--experiment", experiment,
                 "--artifacts", str(artifacts), *(["--runs", *runs] if runs else [])])


def _lines(text: str, action: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(action)]


@pytest.mark.slow  # starts an MLflow server
def test_sync_mirrors_each_run_and_syncing_again_changes_nothing(mlflow_server, experiment,
                                                                  artifacts, capsys):
    before = _tree(artifacts)
    assert _sync(mlflow_server, experiment, artifacts) == 0
    out = capsys.readouterr().out
    assert len(_lines(out, "created")) == 3 and out.strip().endswith("3 runs: 3 created")
    runs = _mlflow_runs(mlflow_server, experiment)
    assert sorted(runs) == sorted(RUN_IDS)
    client = _client(mlflow_server)
    for run_id, run in runs.items():
        run_dir = artifacts / "runs" / run_id
        config, metrics = _json(run_dir / "config.json"), _json(run_dir / "metrics.json")
        assert run.data.params == {k: str(v) for k, v in flat_params(config).items()}
        assert run.data.params["hyperparameters.batch_size"] == "32"
        history = _history(run_dir)
        for column in HISTORY_SCALARS:
            points = sorted((m.step, m.value) for m in
                            client.get_metric_history(run.info.run_id, column))
            assert points == [(int(row["epoch"]), row[column]) for row in history]
        for name in ("test_top1", "test_top5", "test_superclass_top1"):
            assert run.data.metrics[name] == metrics[name]
        assert run.data.metrics["training.epochs_run"] == metrics["training"]["epochs_run"]
        tags = run.data.tags
        assert tags["mlflow.runName"] == run_id
        assert tags["cifar_core.model"] == str(config["model"]["number"])
        assert tags["cifar_core.data_sha256"] == config["dataset"]["sha256"]
        assert tags["cifar_core.code_version"] == "test fixture-dirty"
        assert run.info.status == "FINISHED"
        assert {f.path for f in client.list_artifacts(run.info.run_id)} == \
            {"config.json", "metrics.json", "history.csv"}  # the fixture has no model.keras
    # Again: nothing sent, nothing duplicated, no metric point logged twice.
    assert _sync(mlflow_server, experiment, artifacts) == 0
    out = capsys.readouterr().out
    assert len(_lines(out, "unchanged")) == 3
    again = _mlflow_runs(mlflow_server, experiment)
    assert {k: r.info.run_id for k, r in again.items()} == \
        {k: r.info.run_id for k, r in runs.items()}
    for run in again.values():
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 1
    assert _tree(artifacts) == before  # the run folders are only read


@pytest.mark.slow  # starts an MLflow server
def test_a_changed_run_is_updated_or_recreated_never_duplicated(mlflow_server, experiment,
                                                                artifacts, capsys):
    assert _sync(mlflow_server, experiment, artifacts) == 0
    first = _mlflow_runs(mlflow_server, experiment)
    client = _client(mlflow_server)
    run_dir = artifacts / "runs" / RUN_IDS[0]
    # A new export and a model file: additions, applied to the same MLflow run.
    (run_dir / "exports").mkdir()
    (run_dir / "exports" / "manifest.json").write_text('{"schema_version": 1, "exports": {}}')
    (run_dir / "model.keras").write_bytes(b"not really a model, only bytes to mirror")
    capsys.readouterr()
    assert _sync(mlflow_server, experiment, artifacts) == 0
    out = capsys.readouterr().out
    assert len(_lines(out, "updated")) == 1 and len(_lines(out, "unchanged")) == 2
    now = _mlflow_runs(mlflow_server, experiment)
    mlflow_id = now[RUN_IDS[0]].info.run_id
    assert mlflow_id == first[RUN_IDS[0]].info.run_id and len(now) == 3
    paths = {f.path for f in client.list_artifacts(mlflow_id)}
    assert {"model.keras", "exports", "config.json"} <= paths
    assert [f.path for f in client.list_artifacts(mlflow_id, "exports")] == \
        ["exports/manifest.json"]
    # A new final value: MLflow cannot overwrite a point, so the run is made again.
    metrics = _json(run_dir / "metrics.json")
    metrics["test_top1"] = 0.5
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert _sync(mlflow_server, experiment, artifacts, RUN_IDS[0]) == 0
    assert _lines(capsys.readouterr().out, "recreated")
    now = _mlflow_runs(mlflow_server, experiment)
    assert len(now) == 3 and now[RUN_IDS[0]].info.run_id != mlflow_id
    recreated = now[RUN_IDS[0]]
    assert recreated.data.metrics["test_top1"] == 0.5
    assert [m.value for m in client.get_metric_history(recreated.info.run_id,
                                                       "test_top1")] == [0.5]
    assert "model.keras" in {f.path for f in client.list_artifacts(recreated.info.run_id)}
    # A changed parameter value: recreated too.
    config = _json(run_dir / "config.json")
    config["hyperparameters"]["learning_rate"] = 0.01
    (run_dir / "config.json").write_text(json.dumps(config))
    assert _sync(mlflow_server, experiment, artifacts, RUN_IDS[0]) == 0
    now = _mlflow_runs(mlflow_server, experiment)
    assert len(now) == 3
    assert now[RUN_IDS[0]].data.params["hyperparameters.learning_rate"] == "0.01"


@pytest.mark.slow  # starts an MLflow server
def test_bad_run_folders_fail_alone_with_one_line_each(mlflow_server, experiment, artifacts,
                                                       capsys):
    runs = artifacts / "runs"
    (runs / RUN_IDS[0] / "metrics.json").unlink()  # incomplete
    run_json = _json(runs / RUN_IDS[1] / "run.json")
    run_json["schema_version"] = 99  # written by a newer cifar_core
    (runs / RUN_IDS[1] / "run.json").write_text(json.dumps(run_json))
    before = _tree(artifacts)
    assert _sync(mlflow_server, experiment, artifacts) == EXIT_PARTIAL
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {RUN_IDS[0]}: metrics.json: missing")
    assert errors[1].startswith(f"error: {RUN_IDS[1]}: run.json: schema version 99")
    assert _lines(captured.out, "created") == [
        line for line in captured.out.splitlines() if RUN_IDS[2] in line]
    assert sorted(_mlflow_runs(mlflow_server, experiment)) == [RUN_IDS[2]]
    assert _tree(artifacts) == before
    # A ref that names no run: its own line too.
    assert _sync(mlflow_server, experiment, artifacts, "no-such-run", RUN_IDS[2]) == \
        EXIT_PARTIAL
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"error: no-such-run: no run 'no-such-run' under {runs}; `cifar-core runs` lists them"]
    assert _lines(captured.out, "unchanged")


@pytest.mark.slow  # starts an MLflow server
def test_a_request_the_server_rejects_fails_that_run_only(mlflow_server, experiment,
                                                          artifacts, capsys):
    config_file = artifacts / "runs" / RUN_IDS[0] / "config.json"
    config = _json(config_file)
    config["hyperparameters"]["bad name!"] = 1  # MLflow refuses "!" in a parameter name
    config_file.write_text(json.dumps(config))
    before = _tree(artifacts)
    assert _sync(mlflow_server, experiment, artifacts) == EXIT_PARTIAL
    captured = capsys.readouterr()
    [error] = captured.err.strip().splitlines()
    assert error.startswith(f"error: {RUN_IDS[0]}: ") and len(error) < 400
    assert len(_lines(captured.out, "created")) == 2
    assert sorted(_mlflow_runs(mlflow_server, experiment)) == sorted(RUN_IDS[1:])  # no half run
    assert _tree(artifacts) == before


def test_an_unreachable_server_gives_one_line_per_run_and_changes_nothing(artifacts, capsys,
                                                                          monkeypatch):
    pytest.importorskip("mlflow", reason='MLflow not installed: pip install -e ".[mlflow]"')
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    before = _tree(artifacts)
    started = time.monotonic()
    code = _sync(f"http://127.0.0.1:{_free_port()}", "unreachable", artifacts)
    assert code == EXIT_PARTIAL
    errors = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":", 2)[1].strip() for line in errors] == sorted(RUN_IDS)
    assert all("cannot reach the tracking server http://127.0.0.1:" in line and
               "Connection refused" in line for line in errors), errors
    assert time.monotonic() - started < 60
    assert _tree(artifacts) == before


def test_without_mlflow_the_error_says_what_to_install(artifacts, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now fails
    assert _sync("http://127.0.0.1:1", "x", artifacts) == 2
    assert capsys.readouterr().err.strip() == \
        'error: mlflow-sync needs MLflow: pip install -e ".[mlflow]"'


def test_the_mlflow_extra_is_declared_and_installed_by_ci():
    root = Path(__file__).resolve().parents[1]
    assert '"mlflow>=' in (root / "pyproject.toml").read_text(encoding="utf-8")
    assert '.[dev,export,mlflow]' in (root / ".ci" / "run").read_text(encoding="utf-8")
