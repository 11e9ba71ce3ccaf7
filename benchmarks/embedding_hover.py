"""Hover-thumbnail benchmark: what the embedding map's hover sprite costs for 10,000 images.

    python benchmarks/embedding_hover.py [--repeats 5] [--no-write]

Needs no trained model and no real data set, so it runs anywhere (``benchmarks/embedding.py``
needs a completed run with its model). It times:

- ``charts.embedding_hover.hover_sprite`` on 10,000 32x32 images of two kinds: the test
  fixtures' synthetic images (noise around a colour, JPEG's worst case) and crops of
  scikit-learn's two sample photographs scaled to 32 px (natural images, nearer CIFAR's);
  the JPEG's bytes and the data URI the page sends (base64: a third more);
- the Embedding map page (AppTest, its PCA map cached, cold and warm) on a 10,000-image run
  made from the committed fixture run of model 5 (its predictions and activations spread to
  10,000 rows, over a 10,000-test-image archive in the fixtures' format), with the hover
  thumbnail and without it (the test images made unavailable to the page, as for a run whose
  data set is missing: no sprite, no component, plotly's own label).

Prints the results and writes the "embedding-hover" block of BENCHMARKS.md's "Embedding map"
section.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # pages._ui, patched below for the page without thumbnails
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

IMAGES = 10_000
FIXTURE_RUN = "20261202-025853-m5-fine"


def _timed(action):
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def photo_crops(count: int, seed: int = 0) -> np.ndarray:
    """``count`` 32x32 crops of scikit-learn's sample photographs, each from 40-200 px."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        picture = photos[i % len(photos)]
        side = int(rng.integers(40, 200))
        top = int(rng.integers(0, picture.shape[0] - side))
        left = int(rng.integers(0, picture.shape[1] - side))
        crop = Image.fromarray(picture[top:top + side, left:left + side])
        crops.append(np.asarray(crop.resize((32, 32), Image.BILINEAR)))
    return np.stack(crops)


def time_sprites(repeats: int) -> list[tuple[str, float, int, int]]:
    """(kind, median seconds, JPEG bytes, data-URI bytes) for each kind of image."""
    import pandas as pd
    from cifar_archives import synthetic_images

    from cifar_core.charts.embedding_hover import hover_sprite

    table = pd.DataFrame({"position": np.arange(IMAGES), "test image": np.arange(IMAGES)})
    kinds = {"synthetic (the fixtures' noisy images)": synthetic_images(
                 np.arange(IMAGES) % 100, 100, seed=1),
             "natural (crops of two photographs)": photo_crops(IMAGES)}
    rows = []
    for kind, images in kinds.items():
        hover_sprite(table, images)  # untimed: first use of PIL's encoder
        times, built = zip(*(_timed(lambda images=images: hover_sprite(table, images))
                             for _ in range(repeats)), strict=True)
        uri = len(built[0].component_data()["sprite"])
        rows.append((kind, statistics.median(times), len(built[0].jpeg), uri))
    return rows


def make_big_run(root: Path) -> tuple[Path, str]:
    """An artifacts folder with the fixture run of model 5 spread to ``IMAGES`` test images,
    and the archive of its images; returns (artifacts, archive)."""
    from cifar_archives import write_cifar100_archive
    from fixtures.make_fixture_runs import FIXTURE_ROOT

    from cifar_core.data import load_dataset

    archive = write_cifar100_archive(root / "cifar-100-python.tar.gz", train_per_class=1,
                                     test_per_class=IMAGES // 100)
    content_hash = load_dataset(str(archive), allow_download=False,
                                show_progress=False).content_hash
    run = root / "runs" / FIXTURE_RUN
    shutil.copytree(FIXTURE_ROOT / "runs" / FIXTURE_RUN, run)
    repeat = IMAGES // 200
    with np.load(run / "predictions.npz") as saved:
        predictions = {key: np.concatenate([saved[key]] * repeat) for key in saved.files}
    predictions["test_index"] = np.arange(IMAGES, dtype=np.int32)
    predictions["y_true"] = np.repeat(np.arange(100), IMAGES // 100).astype(np.int16)
    np.savez(run / "predictions.npz", **predictions)
    with np.load(run / "embedding.npz") as saved:
        noise = np.random.default_rng(0).normal(0, 0.05, (IMAGES, saved["vectors"].shape[1]))
        vectors = (np.concatenate([saved["vectors"]] * repeat) + noise).astype(np.float16)
        np.savez(run / "embedding.npz", vectors=vectors, layer_width=saved["layer_width"],
                 stored_as=saved["stored_as"])
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["num_test"] = IMAGES
    (run / "metrics.json").write_text(json.dumps(metrics))
    config = json.loads((run / "config.json").read_text())
    config["dataset"].update(source=str(archive), sha256=content_hash, num_test=IMAGES)
    (run / "config.json").write_text(json.dumps(config))
    return root, str(archive)


def cache_the_map(artifacts: Path) -> None:
    """The run's PCA map computed into the cache folder, as the page will look for it."""
    from cifar_core.analysis import embedding as ea
    from cifar_core.runs.store import list_runs

    (record,) = list_runs(artifacts)
    seed = int((record.config or {}).get("seed") or 0)
    ea.run_map(record, ea.saved_embedding(record), "pca", seed)


def time_page(artifacts: Path, repeats: int, thumbnails: bool) -> tuple[float, float, float]:
    """(cold, warm median, warm max) seconds of the Embedding map page in AppTest."""
    from streamlit.testing.v1 import AppTest

    from pages import _ui

    real = _ui.test_images
    if not thumbnails:
        _ui.test_images = lambda record: None  # the page's own path for missing images
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        at.session_state["artifacts_dir"] = str(artifacts)
        at.session_state["run_id"] = FIXTURE_RUN
        at.session_state["embedding_method"] = "pca"
        at.run()
        at.switch_page("pages/embedding.py")
        cold, _ = _timed(at.run)
        assert not at.exception, [e.value for e in at.exception]
        hover = [e for e in at.get("bidi_component")]
        assert bool(hover) == thumbnails, hover
        warm = [_timed(at.run)[0] for _ in range(repeats)]
    finally:
        _ui.test_images = real
    return cold, statistics.median(warm), max(warm)


def markdown(sprites, pages: dict, repeats: int) -> str:
    from dashboard import environment_lines

    lines = [
        "Generated by `python benchmarks/embedding_hover.py` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC: the hover thumbnail's sprite "
        f"(all of a run's points, 32 px cells, JPEG) for {IMAGES:,} images, and the page "
        f"rendered by AppTest on a {IMAGES:,}-image run (the fixture run of model 5 spread to "
        "that many rows, PCA map, no model needed).",
        "",
        *environment_lines(),
        f"- Sprite: median of {repeats}; page: warm = median of {repeats} after the cold run.",
        "",
        "| images (10,000) | build the sprite | JPEG | sent (data URI) |",
        "|---|---|---|---|",
    ]
    for kind, seconds, jpeg, uri in sprites:
        lines.append(f"| {kind} | {seconds:.2f} s | {jpeg / 1e6:.2f} MB | {uri / 1e6:.2f} MB |")
    lines += ["", "| Embedding map page, AppTest | cold | warm (median) | warm (max) |",
              "|---|---|---|---|"]
    for name, (cold, warm, top) in pages.items():
        lines.append(f"| {name} | {cold:.2f} s | {warm:.2f} s | {top:.2f} s |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    sprites = time_sprites(args.repeats)
    with tempfile.TemporaryDirectory(prefix="hover-bench-") as scratch:
        artifacts, archive = make_big_run(Path(scratch))
        os.environ["CIFAR_CORE_CACHE"] = str(Path(scratch) / "cache")
        os.environ["CIFAR_CORE_DATA"] = archive
        cache_the_map(artifacts)  # so that neither cold page computes it
        pages = {"with the hover thumbnail": time_page(artifacts, args.repeats, True),
                 "without it (no test images)": time_page(artifacts, args.repeats, False)}
    body = markdown(sprites, pages, args.repeats)
    from dashboard import publish

    publish(body, "embedding-hover", "Embedding map", not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
