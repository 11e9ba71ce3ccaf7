"""Exports (LiteRT float32/float16/int8, ONNX, SavedModel): converted by the real converters,
checked by the real runtimes on the run's test set, recorded in the manifest, used by
``predict --runtime``; and every refusal leaves the run folder as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_core import cli
from cifar_core.errors import ConfigError, DataError, RunFolderError
from cifar_core.exports.make import ExportClassifier, export_run
from cifar_core.exports.manifest import MANIFEST_FILE, content_sha256, read_manifest
from cifar_core.exports.parity import parity
from cifar_core.models.float32 import AUGMENTATION_LAYERS, inference_copy
from cifar_core.runs.store import list_runs

FORMATS = [("litert", "none"), ("litert", "float16"), ("litert", "int8"), ("onnx", "none"),
           ("saved_model", "none")]


def _run(artifacts, model: int = 5):
    return next(r for r in list_runs(artifacts) if r.model_number == model
                and r.label_set == "fine")


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def fixture_copy(fixture_runs, tmp_path) -> Path:
    """A writable copy of the committed runs (no model.keras)."""
    shutil.copytree(fixture_runs / "runs", tmp_path / "runs")
    return tmp_path


# --- the gate --------------------------------------------------------------------------


def test_parity_on_a_known_case():
    recorded = {"y_true": np.array([0, 1, 2, 0]), "y_pred": np.array([0, 1, 1, 0]),
                "probs": np.array([[.9, .1, 0], [.2, .8, 0], [.1, .6, .3], [.7, .2, .1]],
                                  dtype=np.float16)}
    same = parity(recorded["probs"].astype(np.float32), recorded)
    assert same["passed"] and same["top1_agreement"] == 1.0 and same["keras_top1"] == 0.75
    # One image of four flips from class 1 to class 2 (now right): top-1 gains, but only 75%
    # agree: a float export fails, an int8 one (judged by top-1 lost) passes.
    moved = recorded["probs"].astype(np.float32).copy()
    moved[2] = [.1, .3, .6]
    failed = parity(moved, recorded, "none")
    assert not failed["passed"] and failed["export_top1"] == 1.0
    assert "top-1 agrees on 75.00% of test images" in failed["failures"][0]
    assert parity(moved, recorded, "int8")["passed"]
    worse = recorded["probs"].astype(np.float32).copy()
    worse[0] = [.1, .9, 0]  # one of four right answers lost: 25 points
    assert "25.00 points below Keras" in parity(worse, recorded, "int8")["failures"][0]


def test_an_inference_copy_is_float32_without_augmentation_and_answers_the_same():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomFlip("horizontal", seed=1, name="flip")(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", dtype="mixed_bfloat16", name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                   name="classifier")(x))
    copy = inference_copy(model)
    layers = copy.layers
    assert not any(isinstance(layer, AUGMENTATION_LAYERS) for layer in layers)
    assert all(layer.dtype_policy.name == "float32" for layer in layers)
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(copy(images)),
                               np.asarray(model(images, training=False)), atol=2e-2)
    plain = keras.Model(inputs, keras.layers.Dense(3, name="other")(keras.layers.Flatten()(
        inputs)))
    assert inference_copy(plain) is plain  # nothing to change: not copied


def test_an_inference_copy_turns_channel_dense_layers_into_1x1_convolutions():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Dense(6, name="pointwise")(inputs)  # as fold_batch_norm builds them
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax",
                                                   name="classifier")(x))
    copy = inference_copy(model)
    assert isinstance(copy.get_layer("pointwise"), keras.layers.Conv2D)
    assert copy.get_layer("pointwise").kernel.shape == (1, 1, 3, 6)
    assert type(copy.get_layer("classifier")) is keras.layers.Dense  # the head stays
    images = np.random.default_rng(1).normal(size=(5, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(copy(images)), np.asarray(model(images)),
                               atol=1e-6)


# --- refusals: one line, nothing changed ---------------------------------------------


def test_bad_choices_are_refused_before_anything_is_read(fixture_copy):
    run = _run(fixture_copy)
    before = _tree(run.path)
    with pytest.raises(ConfigError, match="unknown export format 'tflite'"):
        export_run(run.path, "tflite")
    with pytest.raises(ConfigError, match="onnx exports take --quantize none, not 'int8'"):
        export_run(run.path, "onnx", "int8")
    with pytest.raises(RunFolderError, match=r"model\.keras: missing"):
        export_run(run.path, "litert")
    assert _tree(run.path) == before


def test_a_manifest_of_a_newer_schema_is_refused_and_kept(fixture_copy):
    run = _run(fixture_copy)
    (run.path / "exports").mkdir()
    (run.path / "exports" / MANIFEST_FILE).write_text(json.dumps(
        {"schema_version": 2, "exports": {}}))
    before = _tree(run.path)
    with pytest.raises(RunFolderError, match=r"newer cifar_core .*upgrade"):
        export_run(run.path, "litert")
    with pytest.raises(RunFolderError, match="newer cifar_core"):
        ExportClassifier(run.path, "litert")
    assert _tree(run.path) == before


def _fake_entry(run_dir: Path, passed: bool) -> Path:
    file = run_dir / "exports" / "model-litert.tflite"
    file.parent.mkdir(exist_ok=True)
    file.write_bytes(b"a file")
    entry = {"file": file.name, "format": "litert", "quantization": "none",
             "sha256": content_sha256(file),
             "parity": {"passed": passed, "failures": [] if passed else ["top-1 agrees on "
                                                                         "90.00%"]}}
    (run_dir / "exports" / MANIFEST_FILE).write_text(json.dumps(
        {"schema_version": 1, "exports": {"litert": entry}}))
    return file


def test_an_export_that_failed_parity_or_was_swapped_is_never_used(fixture_copy):
    run = _run(fixture_copy)
    with pytest.raises(RunFolderError, match="has no litert export: make one with"):
        ExportClassifier(run.path, "litert")
    _fake_entry(run.path, passed=False)
    with pytest.raises(RunFolderError, match=r"litert failed its parity check \(top-1 agrees"):
        ExportClassifier(run.path, "litert")
    file = _fake_entry(run.path, passed=True)
    file.write_bytes(b"another file")
    with pytest.raises(RunFolderError, match="SHA-256 mismatch"):
        ExportClassifier(run.path, "litert")


def test_the_cli_says_what_is_wrong_in_one_line(fixture_copy, capsys):
    run = _run(fixture_copy)
    assert cli.main(["export", "--run", str(run.path), "--format", "litert"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "model.keras: missing" in err[0]
    with pytest.raises(SystemExit):
        cli.main(["export", "--run", str(run.path), "--format", "tflite"])


# --- real exports of a trained tiny model --------------------------------------------


@pytest.fixture(scope="module")
def exported(trained_runs, tmp_path_factory) -> Path:
    """Model 5's trained run, copied, with every export made once."""
    root = tmp_path_factory.mktemp("exports")
    source = _run(trained_runs)
    shutil.copytree(source.path, root / "runs" / source.run_id)
    run = _run(root)
    for export_format, quantization in FORMATS:
        export_run(run.path, export_format, quantization, log=lambda line: None)
    return root


@pytest.mark.slow
def test_every_format_passes_parity_and_the_manifest_describes_each_file(exported):
    run = _run(exported)
    entries = read_manifest(run.path)["exports"]
    assert sorted(entries) == ["litert", "litert-float16", "litert-int8", "onnx",
                               "saved_model"]
    for name, entry in entries.items():
        path = run.path / "exports" / entry["file"]
        assert entry["sha256"] == content_sha256(path), name
        assert entry["parity"]["passed"], (name, entry["parity"])
        assert entry["parity"]["test_images"] == run.metrics["num_test"]
        assert entry["input"]["shape"] == [None, 32, 32, 3]
        if entry["quantization"] != "int8":
            assert entry["parity"]["top1_agreement"] >= 0.999, name
    sizes = {name: entry["bytes"] for name, entry in entries.items()}
    assert sizes["litert-int8"] < sizes["litert-float16"] < sizes["litert"]
    assert entries["litert-int8"]["representative_images"] == 300
    assert not [p for p in (run.path / "exports").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_the_classify_page_offers_every_passing_export_savedmodel_as_a_zip(exported):
    from streamlit.testing.v1 import AppTest

    run = _run(exported)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=120)
    at.session_state["artifacts_dir"] = str(exported)
    at.session_state["run_id"] = run.run_id
    at.run()
    at.switch_page("pages/classify.py").run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {b.proto.label for b in at.get("download_button")}
    entries = read_manifest(run.path)["exports"]
    assert labels == {f"Download {e['file']}" + (" (zip)" if name == "saved_model" else "")
                      for name, e in entries.items()}


@pytest.mark.slow
def test_an_existing_export_is_replaced_only_when_asked(exported):
    run = _run(exported)
    before = _tree(run.path / "exports")
    with pytest.raises(ConfigError, match=r"already has the onnx export.*--replace"):
        export_run(run.path, "onnx")
    assert _tree(run.path / "exports") == before
    export_run(run.path, "onnx", replace=True, log=lambda line: None)
    assert read_manifest(run.path)["exports"]["onnx"]["parity"]["passed"]


@pytest.mark.slow
def test_missing_data_for_parity_is_refused_before_writing(exported, tmp_path):
    run = _run(exported)
    copy = tmp_path / "runs" / run.run_id
    shutil.copytree(run.path, copy)
    config = json.loads((copy / "config.json").read_text())
    config["dataset"]["source"] = str(tmp_path / "gone.tar.gz")
    (copy / "config.json").write_text(json.dumps(config))
    before = _tree(copy)
    with pytest.raises(DataError, match=r"gone\.tar\.gz: not found"):
        export_run(copy, "litert", "int8", replace=True)
    assert _tree(copy) == before


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "onnx", "saved_model"])
def test_one_runtime_shared_by_eight_threads_answers_each_as_if_alone(exported, runtime):
    """The dashboard caches one runtime per process and browser sessions call it from
    their own threads, with batches of different sizes (one upload, a gallery)."""
    from concurrent.futures import ThreadPoolExecutor

    from cifar_core.analysis.images import run_dataset
    from cifar_core.exports.runtimes import open_runtime

    run = _run(exported)
    entry = read_manifest(run.path)["exports"][runtime]
    model = open_runtime(run.path / "exports" / entry["file"], runtime)
    images = run_dataset(run).x_test[:16].astype(np.float32)
    batches = [images[:size] for size in (1, 5, 16, 3)]
    alone = [model.probabilities(batch) for batch in batches]

    def calls(thread: int) -> list[int]:
        wrong = []
        for call in range(40):
            which = (thread + call) % len(batches)
            if not np.allclose(model.probabilities(batches[which]), alone[which], atol=1e-6):
                wrong.append(call)
        return wrong

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(calls, range(8)))
    assert results == [[]] * 8


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["litert", "onnx", "saved_model"])
def test_predict_with_an_export_answers_like_keras(exported, tiny_cifar100, tmp_path, capsys,
                                                    runtime):
    from cifar_core.analysis.images import run_dataset

    run = _run(exported)
    images = run_dataset(run).x_test[:4]
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(files[-1])
    answers = {}
    for which in ("keras", runtime):
        assert cli.main(["predict", *files, "--run", str(run.path), "--json",
                         "--runtime", which]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["runtime"] == which
        answers[which] = [r["top"][0]["class"] for r in out["results"]]
    assert answers[runtime] == answers["keras"]


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("export_format", ["litert", "onnx"])
def test_model8_exports_with_its_flips_upsampling_and_bfloat16_blocks(export_format, tmp_path):
    """Model 8 as built (test-time flips around the network, 144 px upsampling, the folded
    upper base in the fine-tune precision) converts, and its export answers like Keras."""
    from conftest import SHARED_WEIGHTS_V1, require_shared

    from cifar_core.exports.convert import write_export
    from cifar_core.exports.runtimes import open_runtime
    from cifar_core.models.builder import build_model, with_test_time_flips
    from cifar_core.models.specs import get_spec

    spec = get_spec(8)
    model = build_model(spec, 10, backbone_weights=str(require_shared(SHARED_WEIGHTS_V1)),
                        seed=1)
    assert spec.recipe.test_time_flips
    model = with_test_time_flips(model)
    images = np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(model(images, training=False))
    suffix = "tflite" if export_format == "litert" else "onnx"
    path = write_export(model, tmp_path / f"model.{suffix}", export_format)
    answers = open_runtime(path, export_format).probabilities(images)
    # Keras computes the folded blocks in bfloat16 where the CPU has it, the export in
    # float32: close, but an untrained head's near-even answers may swap their top class, so
    # the exact check is against the float32 copy the export was made from.
    np.testing.assert_allclose(answers, expected, atol=0.05)
    reference = np.asarray(inference_copy(model)(images, training=False))
    np.testing.assert_array_equal(answers.argmax(axis=1), reference.argmax(axis=1))
    np.testing.assert_allclose(answers, reference, atol=1e-4)


def test_a_download_is_the_checked_file_or_its_savedmodel_folder_as_one_zip(tmp_path):
    import io
    import zipfile

    from cifar_core.exports.manifest import download

    run = tmp_path / "20261202-000000-m5-fine"
    folder = run / "exports" / "m5_saved_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    single = run / "exports" / "m5_litert_int8.tflite"
    single.write_bytes(b"TFL3 bytes")
    saved = {"file": folder.name, "sha256": content_sha256(folder)}
    litert = {"file": single.name, "sha256": content_sha256(single)}

    data, name = download(run, "saved_model", saved)
    assert name == f"{run.name}-m5_saved_model.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == {
            "m5_saved_model/saved_model.pb": b"graph",
            "m5_saved_model/variables/variables.index": b"index"}
    assert download(run, "litert_int8", litert) == (b"TFL3 bytes", f"{run.name}-{single.name}")
    # A file changed after its parity check is not handed out under that check's figures.
    single.write_bytes(b"TFL3 other")
    with pytest.raises(RunFolderError, match="SHA-256 mismatch"):
        download(run, "litert_int8", litert)
