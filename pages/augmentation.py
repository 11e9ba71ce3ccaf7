"""Augmentation: model 5's random flips applied several times to the same images."""

import streamlit as st

from cifar_core.analysis import images as image_analysis
from cifar_core.analysis.names import literal_markdown, readable
from cifar_core.charts.augmentation import augmentation_figure
from pages import _ui

_ui.page_frame()

st.title("Augmentation")
st.markdown("Model 5 adds random flips in front of the network, active in training only: "
            "every epoch sees each image possibly flipped. Below, the same images pass "
            "through model 5's own augmentation layer several times, as successive epochs "
            "would; the seed makes it reproducible.")

record = _ui.current_run()
dataset = None
with _ui.guard("Loading images"), st.spinner("Loading the data set…"):
    dataset = (image_analysis.run_dataset(record, fallback_source=_ui.data_source())
               if record is not None else image_analysis.source_dataset(_ui.data_source()))
if dataset is None:
    st.stop()
st.caption(literal_markdown(f"Images of {dataset.name} ({dataset.source})"  # a path: as written
                            + (f", the data set of run {record.run_id}"
                               if record is not None else "")))

left, middle, right = st.columns(3)
split = left.radio("Images from", ["test", "train"], horizontal=True)
by_class = middle.radio("Which", ["random", "one class"], horizontal=True) == "one class"
class_index = (right.selectbox("Class", range(dataset.num_classes),
                               format_func=lambda i: readable(dataset.class_names[i]))
               if by_class else None)
left, middle, right = st.columns(3)
count = left.slider("Images", 1, 8, 4)
copies = middle.slider("Augmented copies each", 2, 6, 4)
seed = int(right.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1))

with _ui.guard("Augmentation preview"):
    indices = image_analysis.pick_images(dataset, split, class_index, count, seed)
    if len(indices) == 0:
        st.info("No images of that class in this split.")
        st.stop()
    images = dataset.x_test if split == "test" else dataset.x_train
    labels = dataset.y_test if split == "test" else dataset.y_train
    preview = image_analysis.augmentation_previews(images[indices], copies, seed)
    captions = [f"{split} #{i} {readable(dataset.class_names[labels[i]])}" for i in indices]
    st.plotly_chart(augmentation_figure(preview, captions), width="stretch")
    st.caption("Model 5's augmentation layer, as installed, produces: "
               + ", ".join(image_analysis.flip_transforms())
               + " (found by drawing it 64 times).")
