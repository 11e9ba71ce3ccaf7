"""Uploads and `predict` inputs: valid oddities are classified, invalid files are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hostile_files import invalid_images, valid_images

from cifar_core.data.images import load_image_array
from cifar_core.errors import ImageError


@pytest.mark.parametrize("name", sorted(valid_images()))
def test_valid_files_of_every_mode_become_32x32_rgb(name):
    array = load_image_array(valid_images()[name], name=name)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8


def test_sixteen_bit_values_are_scaled_not_clipped():
    array = load_image_array(valid_images()["16bit.png"])
    assert array.max() > 200 and array.min() < 50  # the full range survives


def test_transparent_pixels_become_white_not_black():
    from hostile_files import encode
    from PIL import Image

    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert load_image_array(encode(clear, "PNG")).min() == 255


def test_huge_photo_is_decoded_at_reduced_scale_quickly():
    data = valid_images()["huge.jpg"]
    start = time.perf_counter()
    load_image_array(data)
    # Decoding 24 megapixels in full would take far longer; draft mode keeps it small.
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.png", "empty"), ("text.png", "not an image"), ("truncated.png", "truncated"),
    ("truncated.jpg", "truncated"), ("bomb.png", "pixels"),
])
def test_invalid_files_get_a_clear_message(name, reason):
    with pytest.raises(ImageError) as info:
        load_image_array(invalid_images()[name], name=name)
    assert name in str(info.value) and reason in str(info.value)


@pytest.mark.slow
def test_predict_classifies_every_valid_file_and_reports_every_invalid_one(tmp_path,
                                                                            trained_runs):
    files = {**valid_images(), **invalid_images()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    run_id = sorted(os.listdir(trained_runs / "runs"))[0]  # with its model
    result = subprocess.run(
        [sys.executable, "-m", "cifar_core.cli", "predict", *[str(tmp_path / n) for n in files],
         "--run", run_id, "--json", "--artifacts", str(trained_runs)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    results = {os.path.basename(r["file"]): r for r in json.loads(result.stdout)["results"]}
    for name in valid_images():
        assert "top" in results[name], results[name]
    for name in invalid_images():
        assert "error" in results[name] and name in results[name]["error"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(invalid_images())
    assert "Traceback" not in result.stderr
