"""Classify: upload an image, see what the model sees, its top-5 classes and why."""

import streamlit as st

from cifar_core.analysis import runs as run_analysis
from cifar_core.analysis.images import upscale
from cifar_core.analysis.names import readable
from cifar_core.charts.prediction import saliency_figure, top_classes_figure
from cifar_core.errors import CifarCoreError, ImageError
from pages import _ui

_ui.page_frame()

FORMATS = ["png", "jpg", "jpeg", "bmp", "webp", "gif"]

st.title("Classify")
record = _ui.require_run()
st.caption(f"Classifying with run {run_analysis.run_label(record)} (change it in the sidebar).")

uploaded = st.file_uploader("An image (PNG, JPEG, BMP, WebP or GIF; any size)", type=FORMATS,
                            key="classify-upload")
if uploaded is None:
    st.info("Upload an image: it is resized to 32x32 like the training images and classified "
            "by the chosen run's model.")
    st.stop()

try:
    classifier = _ui.classifier(record)
except CifarCoreError as exc:
    st.error(f"This run's model cannot be used: {exc}")
    st.stop()

from cifar_core.analysis.classify import (  # noqa: E402  (imports TensorFlow)
    classify_upload,
    uncertainty,
)

result = None
try:
    with st.spinner("Classifying…"):
        result = classify_upload(classifier, uploaded.getvalue(), name=uploaded.name)
except ImageError as exc:
    st.error(f"This file cannot be classified: {exc}")
except CifarCoreError as exc:
    st.error(f"Classification failed: {exc}")
except Exception as exc:  # never a traceback for a user's file
    _ui.log.exception("classifying %s failed", uploaded.name)
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
    st.markdown(f"**Prediction:** {readable(prediction.classes[0])}  \n"
                f"**Probability:** {100 * prediction.probabilities[0]:.1f}%"
                + (f"  \n**Superclass:** {readable(prediction.superclass)}"
                   if prediction.superclass else ""))
    if unsure := uncertainty(prediction):
        st.warning(unsure)
    st.caption(f"Decoded and classified in {1000 * result.seconds:.0f} ms.")
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
