"""Class names as people read them."""

from cifar_core.analysis.names import readable, readable_all


def test_underscores_become_spaces_and_case_is_kept():
    assert readable("fruit_and_vegetables") == "fruit and vegetables"
    assert readable("large_man-made_outdoor_things") == "large man-made outdoor things"
    assert readable("Golden Retriever") == "Golden Retriever"
    assert readable("  two__spaces_ ") == "two spaces"


def test_non_text_names_and_lists():
    assert readable(3) == "3"
    assert readable_all(["maple_tree", "cat"]) == ["maple tree", "cat"]
