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


def test_literal_markdown_escapes_what_markdown_would_interpret():
    from cifar_core.analysis.names import literal_markdown

    text = "train/<class>/*, test/<class>/* and my_file_name [x](y)"
    escaped = literal_markdown(text)
    assert "\\*" in escaped and "\\_" in escaped and "\\<" in escaped and "\\[" in escaped
    # removing the escapes gives the text back, character for character
    assert escaped.replace("\\", "") == text
