"""Classify: upload an image, take a picture or pick a test image; see what the model sees,
its top-5 classes and why, and what every counted model says of the same image."""

import streamlit as st

from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.images import upscale
from cifar_core.analysis.names import readable
from cifar_core.charts.prediction import saliency_figure, top_classes_figure
from cifar_core.errors import CifarCoreError, ImageError
from cifar_core.exports.manifest import passing_exports
from pages import _ui

_ui.page_frame()

FORMATS = ["png", "jpg", "jpeg", "bmp", "webp", "gif"]

st.title("Classify")
record = _ui.require_run()
st.caption(f"Classifying with run {run_analysis.run_label(record)} (change it in the sidebar).")
exports = passing_exports(record.path)
with st.expander(f"Exports of this run ({len(exports)} passed the parity check)"):
    from cifar_core.exports.manifest import download, exports_folder, read_manifest
    from cifar_core.exports.parity import in_words

    try:
        entries = read_manifest(record.path)["exports"]
    except CifarCoreError as exc:
        entries = {}
        st.warning(str(exc))
    if not entries:
        st.caption(f"None yet: `cifar-core export --run {record.run_id} --format litert "
                   "--quantize int8` (or onnx, saved_model) writes one and checks it on the "
                   "test set.")
    for name, entry in entries.items():
        st.markdown(f"**{name}**: {entry['bytes'] / 1e6:.2f} MB; {in_words(entry['parity'])}")
        path = exports_folder(record.path) / entry["file"]
        if entry["parity"].get("passed") and path.exists():
            folder = path.is_dir()  # a SavedModel: offered as one zip
            st.download_button(
                f"Download {entry['file']}" + (" (zip)" if folder else ""),
                data=lambda name=name, entry=entry: download(record.path, name, entry)[0],
                file_name=f"{record.run_id}-{entry['file']}" + (".zip" if folder else ""),
                on_click="ignore", key=f"classify-download-{name}")


SOURCES = {"upload": "Upload a file", "camera": "Camera", "test": "A test image"}
TEST_PICK_KEY = "classify-test-pick"  # (class filter, draw number) of the test image shown
source = st.radio("Image", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                  key="classify-source")
uploaded, test_image, true_class = None, None, None
if source == "upload":
    uploaded = st.file_uploader("An image (PNG, JPEG, BMP, WebP or GIF; any size)",
                                type=FORMATS, key="classify-upload")
elif source == "camera":
    uploaded = st.camera_input("Take a picture", key="classify-camera")
else:
    names = record.metrics.get("class_names") or []
    left, right = st.columns([3, 1])
    wanted = left.selectbox("Of the class", [None, *names], key="classify-test-class",
                            format_func=lambda n: "any class" if n is None else readable(n))
    draw = st.session_state.get(TEST_PICK_KEY, 0)
    if right.button("Another one", key="classify-test-next"):
        draw += 1
        st.session_state[TEST_PICK_KEY] = draw
    from cifar_core.analysis.images import pick_test_image

    images = _ui.test_images(record)
    if images is None:
        st.stop()
    picked = pick_test_image(_ui.predictions(record), names.index(wanted) if wanted else None,
                             draw)
    if picked is None:
        st.info("No test image of that class in this run's predictions.")
        st.stop()
    test_image, true_class = images[picked.test_index], names[picked.true_class]
if uploaded is None and test_image is None:
    st.info("Upload an image: it is resized to 32x32 like the training images and classified "
            "by the chosen run's model." if source == "upload" else
            "Take a picture: it is resized to 32x32 like the training images and classified "
            "by the chosen run's model.")
    st.stop()

try:
    classifier = _ui.classifier(record)
except CifarCoreError as exc:
    st.error(f"This run's model cannot be used: {exc}")
    st.stop()

# An export that passed its parity check answers by default (faster); Keras draws the map.
runtimes = ["keras", *dict.fromkeys(e["format"] for e in exports.values()
                                    if e["format"] in ("litert", "onnx"))]
controls = st.columns(2)
runtime = controls[0].radio("Answered by", runtimes, horizontal=True, key="classify-runtime",
                            index=1 if len(runtimes) > 1 else 0,
                            format_func={"keras": "Keras (model.keras)", "litert": "LiteRT",
                                         "onnx": "ONNX Runtime"}.get,
                            help="An export of this run that passed its parity check on the "
                                 "test set (cifar-core export), or the Keras model.")
explain = controls[1].toggle("What drove the prediction (saliency map)", value=False,
                             key="classify-explain",
                             help="Computed with the Keras model (it needs gradients).")
answering = classifier
if runtime != "keras":
    try:
        answering = _ui.export_classifier(record, runtime)
    except CifarCoreError as exc:
        st.warning(f"The {runtime} export cannot be used, Keras answers instead: {exc}")

from cifar_core.analysis.classify import (  # noqa: E402  (imports TensorFlow)
    classify_image,
    classify_upload,
    every_model,
    uncertainty,
)

result = None
name = uploaded.name if uploaded is not None else "test image"
try:
    with st.spinner("Classifying…"):
        result = (classify_upload(answering, uploaded.getvalue(), name=name,
                                  explain=explain, explainer=classifier.model)
                  if uploaded is not None else
                  classify_image(answering, test_image, explain=explain,
                                 explainer=classifier.model))
except ImageError as exc:
    st.error(f"This file cannot be classified: {exc}")
except CifarCoreError as exc:
    st.error(f"Classification failed: {exc}")
except Exception as exc:  # never a traceback for a user's file
    _ui.log.exception("classifying %s failed", name)
    st.error(f"Classification failed unexpectedly ({type(exc).__name__}). The details are "
             "in the app's log.")
if result is None:
    st.stop()

prediction = result.prediction
left, right = st.columns([1, 2])
with left:
    st.image(upscale(result.model_input, 192),
             caption=f"The 32x32 input the model sees (from the file's "
                     f"{result.original_size[0]}x{result.original_size[1]} pixels)")
    # Markdown, not st.metric: long names ("fruit and vegetables") wrap instead of being cut.
    if true_class is not None:
        right_or_wrong = "right" if prediction.classes[0] == true_class else "wrong"
        st.markdown(f"**True class:** {readable(true_class)} (the model is {right_or_wrong})")
    st.markdown(f"**Prediction:** {readable(prediction.classes[0])}  \n"
                f"**Probability:** {100 * prediction.probabilities[0]:.1f}%"
                + (f"  \n**Superclass:** {readable(prediction.superclass)}"
                   if prediction.superclass else ""))
    if unsure := uncertainty(prediction):
        st.warning(unsure)
    answered_by = (f"the {answering.export_name} export ({runtime})"
                   if answering is not classifier else "Keras")
    st.caption(f"Decoded and classified in {1000 * result.seconds:.0f} ms by {answered_by}.")
with right:
    st.plotly_chart(top_classes_figure(prediction.classes, prediction.probabilities),
                    width="stretch")
if result.saliency is not None:
    st.subheader("What drove the prediction")
    st.plotly_chart(saliency_figure(result.model_input, result.saliency.heatmap,
                                    result.saliency.method, prediction.classes[0]),
                    width="stretch")
    st.caption("Brighter areas raised the score of the predicted class most. Grad-CAM "
               "(models 1-5, element-wise HiResCAM form) weighs the conv layer's activations "
               "by their gradients; SmoothGrad (MobileNet models) averages input gradients "
               "over noisy copies.")

if st.toggle("Every counted model on this image", key="classify-every-model",
             help="The counted run of each model (the Overview's choice), top 3 each."):
    loaded, failed = [], []
    for label, run in _ui.counted_runs_over_classes_of(record):
        try:
            loaded.append((label, _ui.classifier(run)))
        except CifarCoreError as exc:
            failed.append(f"{label} (run {run.run_id}): {exc}")
    answers = every_model(loaded, result.model_input)
    columns = st.columns(max(1, min(4, len(answers))))
    for i, answer in enumerate(answers):
        with columns[i % len(columns)]:
            lines = "  \n".join(f"{readable(c)}: {100 * p:.1f}%" for c, p in
                                zip(answer.prediction.classes, answer.prediction.probabilities,
                                    strict=True))
            st.markdown(f"**{answer.label}**  \n{lines}")
            st.caption(f"run {answer.run_id}, {1000 * answer.seconds:.0f} ms")
    for line in failed:
        st.caption(f"Not shown: {line}")
    if answers:
        st.caption(f"{len(answers)} models in {sum(a.seconds for a in answers):.2f} s.")

