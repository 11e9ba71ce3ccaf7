"""The seven specs and the one builder."""

from __future__ import annotations

import keras
import pytest
from conftest import SHARED_WEIGHTS_V1, require_shared

from cifar_core.errors import BackboneWeightsError, ConfigError
from cifar_core.models import SPECS, get_spec
from cifar_core.models.builder import build_model
from cifar_core.models.specs import spec_differences

IDENTITY_FIELDS = {"number", "title", "change"}


def _layers_of(model: keras.Model, kind) -> list:
    """Layers of ``kind``, looking one level into blocks such as ``augment_flips``."""
    found = []
    for layer in model.layers:
        inner = layer.layers if isinstance(layer, keras.Sequential) else [layer]
        found += [x for x in inner if isinstance(x, kind)]
    return found


def test_each_model_is_the_previous_plus_exactly_one_change():
    for number in range(2, 8):
        before, after = SPECS[number - 1].to_dict(), SPECS[number].to_dict()
        changed = {name for name in before if before[name] != after[name]} - IDENTITY_FIELDS
        if number == 6:  # the pretrained base comes with its fine-tuning step size
            assert changed == {"stem", "learning_rate"}
        else:
            assert len(changed) == 1, (number, changed)


def test_model8_is_a_short_diff_of_model6():
    """Model 8 derives from model 6; what it changes is a recipe, not a new model."""
    before, after = SPECS[6].to_dict(), SPECS[8].to_dict()
    changed = {name for name in before if before[name] != after[name]} - IDENTITY_FIELDS
    assert changed == {"input_size", "frozen_through", "fold_batch_norm", "pooling",
                       "hidden_units", "vertical_flips", "feature_shift", "learning_rate",
                       "lr_schedule", "head_warmup_epochs", "label_smoothing",
                       "test_time_flips", "epochs", "batch_size", "patience",
                       "validation_fraction"}


def test_a_spec_records_flat_under_the_names_of_every_earlier_version():
    """config.json keeps the flat field names, so runs written before the spec had parts
    still compare field by field; a part that does not exist is refused."""
    from cifar_core.models.specs import flat_defaults

    recorded = SPECS[5].to_dict()
    assert recorded["augment_flips"] is True and "flips" not in recorded
    assert set(flat_defaults()) == set(recorded) - IDENTITY_FIELDS
    with pytest.raises(ConfigError, match="no part"):
        SPECS[5].changed(head={"units": 3})


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("num_classes", [100, 20])
def test_small_models_have_the_layers_of_their_spec(number, num_classes):
    spec = get_spec(number)
    model = build_model(spec, num_classes)
    assert model.output_shape == (None, num_classes)
    conv = _layers_of(model, keras.layers.Conv2D)
    assert [(c.filters, c.kernel_size) for c in conv] == [(10, (2, 2))]
    assert len(_layers_of(model, keras.layers.MaxPooling2D)) == 1
    dense = _layers_of(model, keras.layers.Dense)
    assert [d.units for d in dense] == [*spec.net.hidden_units, num_classes]
    assert all(d.activation.__name__ == "relu" for d in dense[:-1])
    assert dense[-1].activation.__name__ == "softmax"
    dropouts = _layers_of(model, keras.layers.Dropout)
    assert [d.rate for d in dropouts] == ([0.2] * len(spec.net.hidden_units) if number >= 4 else [])
    flips = _layers_of(model, keras.layers.RandomFlip)
    # Two independent coins (horizontal, vertical): all four flip variants, as in the report.
    assert sorted(f.mode for f in flips) == (["horizontal", "vertical"] if number >= 5 else [])


@pytest.mark.parametrize("number", [6, 7])
def test_mobilenet_models_reuse_the_base_and_keep_the_head(number):
    model = build_model(get_spec(number), 100, backbone_weights=None)
    assert model.output_shape == (None, 100)
    base = model.get_layer("mobilenet_1.00_32")
    assert base.trainable  # fine-tuned, as the report did
    assert base.output_shape == (None, 1, 1, 1024)
    assert [d.units for d in _layers_of(model, keras.layers.Dense)] == [128, 64, 100]
    assert _layers_of(model, keras.layers.RandomFlip)


def test_frozen_variant_freezes_only_the_base():

    frozen = get_spec(6).changed(net={"freeze_backbone": True})
    model = build_model(frozen, 20, backbone_weights=None)
    assert not model.get_layer("mobilenet_1.00_32").trainable
    assert model.get_layer("classifier").trainable


@pytest.mark.slow  # builds and runs whole MobileNets: seconds, kept out of the quick tier
@pytest.mark.shared
def test_mobilenet_loads_the_shared_imagenet_weights():
    weights = require_shared(SHARED_WEIGHTS_V1)
    model = build_model(get_spec(6), 100, backbone_weights=str(weights))
    random = build_model(get_spec(6), 100, backbone_weights=None)
    first = model.get_layer("mobilenet_1.00_32").get_layer("conv1").get_weights()[0]
    other = random.get_layer("mobilenet_1.00_32").get_layer("conv1").get_weights()[0]
    assert first.shape == other.shape and abs(first - other).max() > 1e-3


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneWeightsError, match="--backbone-weights"):
        build_model(get_spec(6), 100, backbone_weights=str(tmp_path / "nope.weights.h5"))


def test_unknown_model_number_is_refused():
    with pytest.raises(ConfigError, match="unknown model 99"):
        get_spec(99)


def test_spec_differences_name_what_a_run_trained_differently():
    current = SPECS[8].to_dict()
    assert spec_differences(current, SPECS[8]) == []
    trial = {**current, "frozen_through": "conv_dw_4_relu", "epochs": 13,
             "change": "reworded", "title": "renamed"}  # prose is not a difference
    assert spec_differences(trial, SPECS[8]) == [
        "frozen_through: 'conv_dw_4_relu' -> 'conv_dw_6_relu'", "epochs: 13 -> 15"]
    # A field older code did not record counts as its default then.
    older = {k: v for k, v in current.items() if k != "feature_cutout"}
    assert spec_differences(older, SPECS[8]) == []
    assert spec_differences({**older, "feature_cutout": 3}, SPECS[8]) == ["feature_cutout: 3 -> 0"]
    # JSON gives lists for tuples; model 7 records the head its search chose.
    assert spec_differences({**SPECS[6].to_dict(), "hidden_units": [128, 64]}, SPECS[6]) == []
    assert spec_differences({**SPECS[6].to_dict(), "hidden_units": [1024, 64]}, SPECS[6]) == [
        "hidden_units: [1024, 64] -> [128, 64]"]
    assert spec_differences({**SPECS[7].to_dict(), "hidden_units": [1024, 64],
                             "dropout": 0.4}, SPECS[7]) == []
    assert spec_differences(None, SPECS[8]) == []  # no spec recorded: nothing to hold against
