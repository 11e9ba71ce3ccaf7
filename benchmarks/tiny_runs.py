"""Shared by the dashboard and reliability benchmarks: tiny real runs and test photos."""

from __future__ import annotations

import io
from pathlib import Path


def make_tiny_runs(artifacts: Path, plan: list[tuple[int, str, int]],
                   backbone_weights: str | None = None, train_per_class: int = 5) -> list:
    """Completed runs by the real pipeline on a tiny CIFAR-100-format archive, one per
    (model, labels, seed) of ``plan``; runs already there are kept, so a rerun is quick.
    Models 6-8 need ``backbone_weights`` (a local MobileNet weights file); model 7's search
    needs ``train_per_class`` of at least 8 (its largest batch, 250, fits in a fold)."""
    from cifar_archives import write_cifar100_archive

    from cifar_core.analysis.runs import usable_runs
    from cifar_core.data import load_dataset
    from cifar_core.pipeline import execute_run
    from cifar_core.runs.store import list_runs
    from cifar_core.training.config import make_config

    def present(records) -> set:
        return {(r.model_number, r.label_set, (r.config or {}).get("seed")) for r in records}

    existing = usable_runs(list_runs(artifacts))
    missing = [key for key in plan if key not in present(existing)]
    if not missing:
        return existing
    dataset = load_dataset(write_cifar100_archive(artifacts / "cifar-100-python.tar.gz",
                                                  train_per_class=train_per_class))
    for model, labels, seed in missing:
        print(f"training model {model} ({labels}, seed {seed}) on tiny data...", flush=True)
        execute_run(make_config(model, labels=labels, profile="quick", epochs=1, batch_size=32,
                                seed=seed,
                                backbone_weights=backbone_weights if model >= 6 else None),
                    dataset=dataset, artifacts=str(artifacts), log=lambda _: None)
    return usable_runs(list_runs(artifacts))


def photo(seed: int) -> bytes:
    """A 640x480 JPEG of random pixels: a realistic upload size, different for each seed."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
