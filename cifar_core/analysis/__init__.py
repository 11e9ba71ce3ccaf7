"""What the dashboard computes from run folders, without any Streamlit: pages call these.

- ``runs``      which run counts per model, the runs table, the progression points
- ``classes``   per-class metrics, weakest/strongest, run differences, confusions
- ``images``    predictions, galleries of test images, the data set behind a run, model 5's
                flip augmentation previews
- ``saliency``  Grad-CAM / SmoothGrad maps for one image
- ``classify``  decode, classify and explain one uploaded file
- ``trials``    model 7's ``trials.csv``
- ``report``    headline numbers and CSV exports (the HTML report is ``cifar_core.reports``)
- ``names``     class and superclass names in words, for what people read

Modules that need TensorFlow (``classify``, ``saliency`` at call time, the augmentation
preview) import it lazily, so the pages that only read run folders start fast.
"""
