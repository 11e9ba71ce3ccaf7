"""What a training config implies, in numbers and words: model 7's search cost, the model's
change and training values as the Train page states them, what --freeze-base does."""

from __future__ import annotations

import pytest

from cifar_core.models.specs import SPECS
from cifar_core.training.config import (
    SEARCH_SPACE_SIZES,
    SEARCH_TOP_TRIALS,
    describe_change,
    describe_search_workload,
    describe_training,
    freeze_base_effect,
    largest_grid,
    make_config,
    search_workload,
)


def test_search_workload_counts_every_training_of_both_stages():
    config = make_config(7, profile="quick", search_trials=5, search_folds=3,
                         search_epochs=4, grid_epochs=6, grid_trials=7, epochs=2)
    workload = search_workload(config)
    assert (workload.stage1_trainings, workload.search_epochs) == (15, 4)  # 5 trials x 3
    assert (workload.stage2_trainings, workload.grid_epochs) == (7, 6)  # capped at 7, 1 fold
    assert workload.max_epochs == 15 * 4 + 7 * 6 + 2
    # Stage 2 on every fold: each combination trains once per fold.
    every_fold = search_workload(make_config(7, profile="quick", grid_folds=2))
    assert every_fold.stage2_trainings == 2 * every_fold.grid_combinations
    text = describe_search_workload(workload, "cached")
    assert "5 trials x 3 folds = 15 trainings of 4 epochs each" in text
    assert "at most 7 combinations x 1 fold = at most 7 trainings of up to 6 epochs" in text
    assert f"at most {15 * 4 + 7 * 6 + 2} epochs in all" in text and "Cached mode" in text


def test_the_seed_profile_searches_as_the_report_did():
    workload = search_workload(make_config(7, profile="seed"))
    assert (workload.trials, workload.folds, workload.search_epochs) == (30, 3, 20)
    # No cap: every combination of the values the best three trials can differ in.
    assert workload.grid_combinations == 3 * 3 * 3 * 3 * 2
    # 90 trainings x 20 epochs + 162 x 50 + the final 50
    assert "at most 9,950 epochs in all" in describe_search_workload(workload)


def test_the_largest_grid_shrinks_with_fewer_trials_than_stage_2_looks_at():
    assert largest_grid(1) == 1  # one trial: nothing differs
    assert largest_grid(2) == 2 ** len(SEARCH_SPACE_SIZES)
    assert largest_grid(100) == largest_grid(SEARCH_TOP_TRIALS)


def test_the_search_space_sizes_are_the_search_spaces():
    from cifar_core.search.space import SEARCH_SPACE, TOP_K  # imports keras-tuner

    assert {name: len(values) for name, values in SEARCH_SPACE.items()} == SEARCH_SPACE_SIZES
    assert TOP_K == SEARCH_TOP_TRIALS


def test_model7s_caption_states_the_folds_and_trials_of_the_chosen_profile():
    quick, seed = (describe_change(make_config(7, profile=p)) for p in ("quick", "seed"))
    assert "RandomSearch (4 trials, 2-fold CV)" in quick
    assert "RandomSearch (30 trials, 3-fold CV)" in seed
    assert "3-fold" in describe_change(make_config(7, profile="quick", search_folds=3))


def test_a_models_own_budget_is_named_when_the_profile_changes_it():
    spec = SPECS[8]
    quick = make_config(8, profile="quick")
    text = describe_change(quick)
    assert text.startswith(spec.change)
    assert f"this job: {quick.epochs} epochs instead of {spec.budget.epochs}" in text
    assert "20% held out for validation instead of 10%" in text
    assert describe_change(make_config(8, profile="seed")) == spec.change  # its own protocol
    assert describe_change(make_config(1, profile="quick")) == SPECS[1].change
    frozen = describe_change(make_config(6, profile="quick", freeze_base=True))
    assert "the base frozen" in frozen and "learning rate 0.001 instead of 0.0001" in frozen


def test_training_in_words_follows_the_config():
    quick = describe_training(make_config(1, profile="quick"))
    assert quick.startswith("Training: up to 3 epochs at batch 128, early stopping after 3 "
                            "epochs without a better validation loss, Adam at learning rate")
    assert "20% of each class" in quick
    own = describe_training(make_config(8, profile="seed"))
    assert "15 epochs at batch 128, no early stopping" in own and "cosine" in own
    assert "10% of each class" in own
    assert "chosen by the search" in describe_training(make_config(7))


@pytest.mark.parametrize("model", sorted(SPECS))
def test_freeze_base_is_described_for_each_model_with_a_base(model):
    effect = freeze_base_effect(model)
    if SPECS[model].net.stem != "mobilenet":
        assert effect is None
        return
    assert "MobileNet base" in effect
    make_config(model, freeze_base=True)  # it applies: the config is accepted
    if SPECS[model].net.frozen_through:  # model 8: the part it fine-tunes is frozen too
        assert "whole MobileNet base" in effect and f"{SPECS[model].net.input_size} px" in effect
