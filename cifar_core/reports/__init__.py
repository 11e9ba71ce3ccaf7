"""Reports put together from the analysis and its figures, above both in the layers.

- ``html``  the stakeholder report as one self-contained HTML file (the Present page's
            download)
"""
