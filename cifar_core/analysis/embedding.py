"""The embedding map: a run's test images placed by what its penultimate layer sees.

Images the model finds alike lie close together, so a class that is spread across the map,
or two classes that share one island, shows a weakness the confusion matrix only counts.

- The activations: ``embedding.npz`` in the run folder (``evaluate()`` saves it), or, for a run
  written before that, computed once from its model and kept in the cache folder
  (``settings.cache_dir()/embeddings``, keyed by the run and its predictions file).
- The map: the activations reduced to 2-D (UMAP or t-SNE on their first 50 principal
  components, or the first two components alone), seeded, and cached next to them.
- Nearest neighbours by cosine similarity of the activations (not of the 2-D map, which bends
  distances), and an export for TensorBoard's Embedding Projector.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cifar_core import settings
from cifar_core.analysis.classes import class_names, has_superclasses, output_to_superclass
from cifar_core.analysis.names import readable
from cifar_core.errors import ConfigError, DataError, RunFolderError
from cifar_core.runs.files import atomic_save, atomic_write_text
from cifar_core.runs.store import EMBEDDING_FILE, PREDICTIONS_FILE, RunRecord

METHODS = {  # what the map is made with, in words for the page
    "umap": "UMAP on the first 50 principal components",
    "tsne": "t-SNE on the first 50 principal components",
    "pca": "the first two principal components",
}
PRE_REDUCTION = 50  # UMAP and t-SNE start from this many principal components (speed)
CACHE_SUBDIR = "embeddings"
SPRITE_SIZE = 32  # one thumbnail of the projector's sprite: the images' own size


@dataclass(frozen=True)
class Embedding:
    """A run's test-image activations: row i is test image i."""

    vectors: np.ndarray  # (n, d) float32
    layer_width: int  # values an image in the penultimate layer
    stored_as: str  # e.g. "the 64 activations", "the first 128 principal components of 2250"
    origin: str  # "saved with the run" or "computed from the run's model"


def read_embedding(file: Path, origin: str, expected_rows: int | None = None) -> Embedding:
    """``embedding.npz`` (read without pickle), checked for its arrays and length."""
    try:
        with np.load(file, allow_pickle=False) as data:
            vectors = np.asarray(data["vectors"], dtype=np.float32)
            width = int(data["layer_width"])
            stored_as = str(data["stored_as"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise RunFolderError(f"{file}: unreadable ({type(exc).__name__}: {exc})") from None
    if vectors.ndim != 2 or not len(vectors):
        raise RunFolderError(f"{file}: vectors of shape {vectors.shape}, not (images, values)")
    if expected_rows is not None and len(vectors) != expected_rows:
        raise RunFolderError(f"{file}: {len(vectors)} vectors for {expected_rows} test images")
    if not np.isfinite(vectors).all():
        raise RunFolderError(f"{file}: vectors that are not finite numbers")
    return Embedding(vectors, width, stored_as, origin)


def cache_folder(record: RunRecord, cache_root: str | Path | None = None) -> Path:
    """Where a run's computed activations and maps are kept: named by the run id and a hash of
    its folder and predictions file, so a retrained run (or another artifacts folder with the
    same run id) never reads another run's map."""
    predictions = record.path / PREDICTIONS_FILE
    try:
        stat = predictions.stat()
        stamp = f"{stat.st_size}-{stat.st_mtime_ns}"
    except OSError:
        stamp = "none"
    key = hashlib.sha256(f"{record.path.resolve()}|{stamp}".encode()).hexdigest()[:12]
    return settings.cache_dir(cache_root) / CACHE_SUBDIR / f"{record.run_id}-{key}"


def _expected_rows(record: RunRecord) -> int | None:
    return (record.metrics or {}).get("num_test")


def saved_embedding(record: RunRecord, cache_root: str | Path | None = None
                    ) -> Embedding | None:
    """The run's activations if they exist: saved with the run, else computed earlier and
    cached; None when neither."""
    rows = _expected_rows(record)
    if (record.path / EMBEDDING_FILE).is_file():
        return read_embedding(record.path / EMBEDDING_FILE, "saved with the run", rows)
    cached = cache_folder(record, cache_root) / EMBEDDING_FILE
    if cached.is_file():
        return read_embedding(cached, "computed from the run's model", rows)
    return None


def compute_embedding(record: RunRecord, model, images: np.ndarray,
                      cache_root: str | Path | None = None,
                      on_batch: Callable[[int, int], None] | None = None) -> Embedding:
    """Compute a run's activations from its ``model`` on its test ``images`` and cache them
    (atomically: an interrupted computation leaves no half file)."""
    from cifar_core.training.evaluate import predict_with_embedding

    rows = _expected_rows(record)
    if rows is not None and len(images) != rows:
        raise DataError(f"{len(images)} test images for a run evaluated on {rows}")
    _, arrays = predict_with_embedding(model, np.asarray(images), on_batch=on_batch)
    if arrays is None:
        raise RunFolderError(f"run {record.run_id}: its model has no classifier layer, so its "
                             "penultimate layer is unknown")
    folder = cache_folder(record, cache_root)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save(folder / EMBEDDING_FILE, lambda p: np.savez_compressed(p, **arrays))
    return read_embedding(folder / EMBEDDING_FILE, "computed from the run's model", rows)


def map_coordinates(vectors: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """``(n, 2)`` float32 coordinates of ``vectors`` (``METHODS``), the same for the same seed."""
    if method not in METHODS:
        raise ConfigError(f"unknown map method {method!r}: choose one of {', '.join(METHODS)}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) < 3:
        raise DataError(f"{len(vectors)} images: a map needs at least 3")
    from sklearn.decomposition import PCA

    components = min(PRE_REDUCTION if method != "pca" else 2, *vectors.shape)
    reduced = PCA(n_components=components, svd_solver="full").fit_transform(vectors)
    if method == "pca":
        if reduced.shape[1] < 2:  # activations of one value: a line
            reduced = np.column_stack([reduced[:, 0], np.zeros(len(reduced))])
        return reduced.astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(vectors) - 1) / 3)
        return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed,
                    ).fit_transform(reduced).astype(np.float32)
    try:
        import umap
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ConfigError("UMAP needs the umap-learn package (pip install umap-learn); "
                          "t-SNE and PCA work without it") from None
    neighbours = max(2, min(15, len(vectors) - 1))
    # A random_state makes UMAP single-threaded, which the seed requires.
    return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed,
                     ).fit_transform(reduced).astype(np.float32)


def cached_map(record: RunRecord, embedding: Embedding, method: str = "umap", seed: int = 0,
               cache_root: str | Path | None = None) -> np.ndarray | None:
    """The map computed earlier for this run, method and seed, or None."""
    file = cache_folder(record, cache_root) / f"map-{method}-seed{seed}.npy"
    if not file.is_file():
        return None
    try:
        coordinates = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None  # recomputed and rewritten
    if coordinates.shape != (len(embedding.vectors), 2):
        return None
    return coordinates


def run_map(record: RunRecord, embedding: Embedding, method: str = "umap", seed: int = 0,
            cache_root: str | Path | None = None) -> np.ndarray:
    """The run's map: from the cache, or computed once and cached."""
    coordinates = cached_map(record, embedding, method, seed, cache_root)
    if coordinates is None:
        coordinates = map_coordinates(embedding.vectors, method, seed)
        folder = cache_folder(record, cache_root)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save(folder / f"map-{method}-seed{seed}.npy",
                    lambda p: np.save(p, coordinates, allow_pickle=False))
    return coordinates


def nearest_neighbours(vectors: np.ndarray, position: int, count: int = 8) -> list[int]:
    """The ``count`` test images whose activations point most nearly the same way as image
    ``position``'s (cosine similarity), the closest first, itself left out."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if not 0 <= position < len(vectors):
        raise DataError(f"image {position} is out of range: {len(vectors)} images")
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    similarity = (vectors @ vectors[position]) / (norms * norms[position])
    similarity[position] = -np.inf
    count = min(count, len(vectors) - 1)
    nearest = np.argpartition(-similarity, count - 1)[:count] if count else np.array([], int)
    return [int(i) for i in nearest[np.argsort(-similarity[nearest], kind="stable")]]


def map_table(coordinates: np.ndarray, predictions: dict[str, np.ndarray],
              metrics: dict) -> pd.DataFrame:
    """One row a test image: its place on the map, true and predicted class (and superclass
    where the run has them), whether it is right, and the predicted class's probability."""
    names = class_names(metrics)
    y_true = np.asarray(predictions["y_true"], dtype=int)
    y_pred = np.asarray(predictions["y_pred"], dtype=int)
    if len(coordinates) != len(y_true):
        raise DataError(f"{len(coordinates)} map points for {len(y_true)} test predictions")
    table = pd.DataFrame({
        "position": np.arange(len(y_true)),
        "test image": np.asarray(predictions["test_index"], dtype=int),
        "x": coordinates[:, 0], "y": coordinates[:, 1],
        "true class": [readable(names[i]) for i in y_true],
        "predicted class": [readable(names[i]) for i in y_pred],
        "correct": y_true == y_pred,
        "confidence": np.asarray(predictions["top_probs"], dtype=float)[:, 0],
    })
    if has_superclasses(metrics) and metrics.get("label_set") == "fine":
        mapping, supers = output_to_superclass(metrics), metrics["superclass_names"]
        table["true superclass"] = [readable(supers[mapping[i]]) for i in y_true]
        table["predicted superclass"] = [readable(supers[mapping[i]]) for i in y_pred]
    return table


# --- TensorBoard's Embedding Projector ---------------------------------------------------


def sprite(images: np.ndarray, size: int = SPRITE_SIZE) -> Image.Image:
    """The images as one square grid, row by row (the projector's sprite image)."""
    images = np.asarray(images, dtype=np.uint8)
    side = math.ceil(math.sqrt(len(images)))
    sheet = np.zeros((side * size, side * size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.shape[:2] != (size, size):
            image = np.asarray(Image.fromarray(image).resize((size, size)))
        row, column = divmod(i, side)
        sheet[row * size:(row + 1) * size, column * size:(column + 1) * size] = image[..., :3]
    return Image.fromarray(sheet)


def _tsv_field(text: str) -> str:
    return " ".join(str(text).split())  # no tabs or line breaks inside a field


def write_projector(folder: str | Path, record: RunRecord, embedding: Embedding,
                    predictions: dict[str, np.ndarray], images: np.ndarray | None) -> Path:
    """Write ``vectors.tsv``, ``metadata.tsv``, ``sprite.png`` (when ``images`` are given) and
    ``projector_config.pbtxt`` into ``folder``: ``tensorboard --logdir <folder>`` opens them in
    its Projector tab. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = map_table(np.zeros((len(embedding.vectors), 2)), predictions, record.metrics or {})
    columns = [c for c in ("test image", "true class", "predicted class", "true superclass",
                           "predicted superclass", "correct", "confidence") if c in table]
    rows = ["\t".join(columns)]
    for values in table[columns].itertuples(index=False):
        rows.append("\t".join(_tsv_field(f"{v:.3f}" if isinstance(v, float) else v)
                              for v in values))
    atomic_write_text(folder / "metadata.tsv", "\n".join(rows) + "\n")
    vectors = "\n".join("\t".join(f"{v:.5g}" for v in row) for row in embedding.vectors)
    atomic_write_text(folder / "vectors.tsv", vectors + "\n")
    sprite_block = ""
    if images is not None:
        if len(images) != len(embedding.vectors):
            raise DataError(f"{len(images)} images for {len(embedding.vectors)} vectors")
        atomic_save(folder / "sprite.png", lambda p: sprite(images).save(p, format="PNG"))
        sprite_block = ('  sprite {\n    image_path: "sprite.png"\n'
                        f'    single_image_dim: {SPRITE_SIZE}\n'
                        f'    single_image_dim: {SPRITE_SIZE}\n  }}\n')
    name = f"{record.run_id} penultimate layer ({embedding.stored_as})".replace('"', "'")
    atomic_write_text(folder / "projector_config.pbtxt",
                      'embeddings {\n'
                      f'  tensor_name: "{name}"\n'
                      '  tensor_path: "vectors.tsv"\n'
                      '  metadata_path: "metadata.tsv"\n'
                      f'{sprite_block}'
                      '}\n')
    return folder
