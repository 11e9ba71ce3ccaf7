"""Embedding map of one run: its test images placed by what the penultimate layer sees;
hovering a point shows its image, a click shows it with its nearest neighbours. The
computations are in ``cifar_core.analysis.embedding``, the figure in
``cifar_core.charts.embedding``, the hover thumbnail in ``cifar_core.charts.embedding_hover``."""

from pathlib import Path

import streamlit as st

from cifar_core.analysis import embedding as embedding_analysis
from cifar_core.analysis import errors as error_analysis
from cifar_core.analysis import images as image_analysis
from cifar_core.analysis import runs as run_analysis
from cifar_core.charts.embedding import embedding_figure, loading_figure, selected_position
from cifar_core.charts.embedding_hover import HOVER_JS, hover_sprite
from cifar_core.errors import CifarCoreError
from pages import _ui

_ui.page_frame()
NEIGHBOURS = 8
MAP_DRAWN_KEY = "embedding_map_drawn"  # this session has drawn a map: plotly is loaded
# Registered on every run of the page with the same script, which Streamlit accepts silently.
hover_thumbnail = st.components.v2.component("embedding_hover_thumbnail", js=HOVER_JS)

st.title("Embedding map")
record = _ui.require_run()
st.caption(f"Run {run_analysis.run_label(record)}")


def compute_activations() -> embedding_analysis.Embedding | None:
    """The run's activations from its model, once, with a progress bar."""
    try:
        model = _ui.classifier(record).model
    except CifarCoreError as exc:
        st.info(f"This run has no saved activations, and they cannot be computed: {exc}")
        return None
    images = _ui.test_images(record)
    if images is None:
        return None
    bar = st.progress(0.0, text="Computing the penultimate-layer activations…")
    result = embedding_analysis.compute_embedding(
        record, model, images, on_batch=lambda done, total: bar.progress(
            done / total, text=f"Computing the activations: batch {done} of {total}"))
    bar.empty()
    return result


@st.cache_resource(max_entries=4, show_spinner=False)
def hover_data(run_key: str, source: str | None, _table, _images) -> dict:
    """The hover thumbnails' sprite for every point of the run (about 0.13 s and 3-6 MB for
    10,000 images), once per run and data source: the same for every map method, colouring
    and filter, so the component's data stays the same and Streamlit does not resend it.
    ``run_key`` names the run and its predictions file (``cache_folder``)."""
    return hover_sprite(_table, _images).component_data()


found = None
with _ui.guard("The embedding map"):
    found = embedding_analysis.saved_embedding(record)
    if found is None:
        st.markdown("This run was written before runs saved their test images' activations. "
                    "They are computed once from its model and kept in the cache folder "
                    "(seconds for models 1-7, about a minute for model 8).")
        if st.button("Compute the activations", type="primary", key="embedding_compute"):
            found = compute_activations()
    if found is None:
        st.stop()

    left, middle, right = st.columns(3)
    map_slot = st.empty()
    if not st.session_state.get(MAP_DRAWN_KEY):
        # The session's first map: its empty frame now, so that the browser loads and starts
        # plotly while the page reads the map (new tab 3.4 -> 2.7 s; BENCHMARKS.md, "Embedding
        # map"). Not on reruns: the frame would replace the map drawn there for a moment.
        map_slot.plotly_chart(loading_figure(record.run_id), width="stretch",
                              key="embedding-loading")
    metrics = record.metrics
    predictions = _ui.predictions(record)
    seed = int((record.config or {}).get("seed") or 0)
    methods = list(embedding_analysis.METHODS)
    # PCA first, as it is instant; UMAP once it has been computed for this run.
    ready = embedding_analysis.cached_map(record, found, "umap", seed) is not None
    method = left.radio("Map", methods, horizontal=True,
                        index=methods.index("umap" if ready else "pca"),
                        format_func={"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}.get,
                        key="embedding_method",
                        help="UMAP keeps both neighbourhoods and the layout of groups; t-SNE "
                             "neighbourhoods only; PCA is linear and instant. UMAP and t-SNE "
                             "take up to a minute the first time, then come from the cache.")
    coordinates = embedding_analysis.cached_map(record, found, method, seed)
    if coordinates is None:
        with st.spinner(f"Placing {len(found.vectors):,} images with "
                        f"{embedding_analysis.METHODS[method]} (once per run and method; "
                        "up to a minute)…"):
            coordinates = embedding_analysis.run_map(record, found, method, seed)
    table = embedding_analysis.map_table(coordinates, predictions, metrics)
    colours = [c for c in ("true superclass", "true class") if c in table]
    colour_by = middle.radio("Colour by", colours, horizontal=True, key="embedding_colour")
    only_errors = right.toggle("Misclassified images only", key="embedding_errors_only")

    chosen_key = f"embedding_chosen_{record.run_id}"
    chosen = st.session_state.get(chosen_key)
    neighbours = (embedding_analysis.nearest_neighbours(found.vectors, chosen, NEIGHBOURS)
                  if chosen is not None else [])
    shown = table[~table["correct"]] if only_errors else table
    images = _ui.test_images(record)
    # With the images, the hover thumbnail's card names the image and its classes, so plotly's
    # label, which would say the same beside it, is left out.
    figure = embedding_figure(shown, colour_by=colour_by, run_id=record.run_id,
                              how=embedding_analysis.METHODS[method], chosen=chosen,
                              neighbours=[n for n in neighbours if n in set(shown["position"])]
                              if chosen is not None and chosen in set(shown["position"])
                              else (), hover_labels=images is None,
                              webgl=not st.session_state.get("embedding_svg", False))
    event = map_slot.plotly_chart(
        figure, width="stretch", on_select="rerun", selection_mode="points",
        key=f"embedding-{record.run_id}-{method}-{colour_by}-{only_errors}")
    st.session_state[MAP_DRAWN_KEY] = True
    if images is not None:  # right after the chart: its script hooks the chart above it
        hover_thumbnail(key=f"embedding-hover-{record.run_id}", data=hover_data(
            embedding_analysis.cache_folder(record).name, _ui.data_source(), table, images))
    clicked = selected_position((event.get("selection", {}) if isinstance(event, dict)
                                 else {}).get("points"))
    if clicked is not None and clicked != chosen:
        st.session_state[chosen_key] = clicked
        st.rerun()  # draw the rings around the new choice
    st.caption(f"Activations: {found.stored_as} of the penultimate layer, {found.origin}. "
               f"Map: {embedding_analysis.METHODS[method]}, seed {seed}. Neighbours are the "
               "closest by cosine similarity of the activations, not of the map.")

    st.checkbox("Draw without WebGL", key="embedding_svg",
                help="The map is drawn with WebGL (10,000 points in about half a second). If "
                     "it stays empty, your browser has WebGL off: this draws SVG instead, a "
                     "few times slower.")
    if chosen is None:
        st.caption("Hover over a point to see its image; click it to see its nearest "
                   "neighbours.")
    else:
        row = table.iloc[chosen]
        st.subheader(f"Test image #{row['test image']}")
        verdict = "right" if row["correct"] else "wrong"
        st.markdown(f"True **{row['true class']}**, predicted **{row['predicted class']}** "
                    f"({100 * row['confidence']:.0f}%, {verdict}).")
        if images is not None:
            picked = image_analysis.gallery(error_analysis.examples_at(predictions, [chosen]),
                                            images, metrics, size=160)
            st.image(picked[0].image, caption=picked[0].caption, width=160)
            st.markdown(f"**Its {len(neighbours)} nearest neighbours**, the closest first")
            _ui.show_gallery(record, image_analysis.gallery(
                error_analysis.examples_at(predictions, neighbours), images, metrics),
                key=f"embedding-neighbours-{record.run_id}-{chosen}")

with _ui.guard("The export"):
    if found is None:
        st.stop()
    st.subheader("Open it in TensorBoard's Embedding Projector")
    folder = Path(_ui.artifacts()) / "projector" / record.run_id
    if st.button("Write the projector files", key="embedding_export"):
        images = _ui.test_images(record)
        with st.spinner("Writing vectors, metadata and the sprite image…"):
            embedding_analysis.write_projector(folder, record, found, predictions, images)
        st.success(f"Written to `{folder}`: vectors.tsv, metadata.tsv"
                   + (", sprite.png" if images is not None else "")
                   + ", projector_config.pbtxt.")
        st.markdown("Run this and open its Projector tab (3-D views, search by class, its "
                    "own t-SNE and UMAP):")
        st.code(f"tensorboard --logdir {folder}", language="bash")
    else:
        # Inline code, not st.code: a code block loads the syntax highlighter's 1.5 MB of
        # script, 0.4 s of the page's opening (BENCHMARKS.md, "Embedding map").
        st.markdown(f"Then `tensorboard --logdir {folder}` opens them in its Projector tab "
                    "(3-D views, search by class, its own t-SNE and UMAP).")
