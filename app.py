"""The dashboard: ``streamlit run app.py``. Declares the pages and the shared frame only.

Pages live in ``pages/``; every computation and figure they show comes from ``cifar_core``.
The app reads run folders and never trains in its own process (the Train page starts jobs).
"""

import os
from pathlib import Path

from cifar_core.native_log import RAW_STDERR_ENV, filter_native_stderr

# Before anything imports TensorFlow: its native start-up lines ("oneDNN custom operations are
# on", "Could not find cuda drivers", "failed call to cuInit") read like errors in the
# terminal of `streamlit run app.py` and say nothing to its users. The level silences what it
# can; the filter drops the lines TensorFlow prints before its logging reads the level (real
# errors pass). CIFAR_CORE_RAW_STDERR=1 keeps the terminal unfiltered (the tests set it: pytest
# captures this process's stderr itself).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # 3 would hide real errors too
if os.environ.get(RAW_STDERR_ENV) != "1":
    filter_native_stderr()

import streamlit as st

from pages import _ui

HERE = Path(__file__).parent
SECTIONS = {
    "Results": [("overview", "Overview", ":material/insights:"),
                ("present", "Present", ":material/slideshow:")],
    "Training": [("train", "Train", ":material/model_training:"),
                 ("tuning", "Tuning", ":material/tune:")],
    "Explore": [("classes", "Classes", ":material/category:"),
                ("confusion", "Confusion", ":material/grid_on:"),
                ("errors", "Errors", ":material/troubleshoot:"),
                ("compare", "Compare", ":material/compare_arrows:"),
                ("embedding", "Embedding map", ":material/scatter_plot:"),
                ("augmentation", "Augmentation", ":material/flip:"),
                ("classify", "Classify", ":material/image_search:")],
}

_ui.use_app_navigation()
st.set_page_config(page_title=_ui.APP_TITLE, page_icon=":material/insights:", layout="wide")
navigation = st.navigation({
    section: [st.Page(f"pages/{name}.py", title=title, icon=icon, default=name == "overview")
              for name, title, icon in pages if (HERE / "pages" / f"{name}.py").is_file()]
    for section, pages in SECTIONS.items()
})
_ui.sidebar()
_ui.resume_jobs()
navigation.run()
