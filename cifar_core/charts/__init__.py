"""Plotly figure builders for the dashboard and the HTML report (no Streamlit here).

- ``progression``   accuracy by model with the report's reference markers
- ``classes``       weakest/strongest classes, run-to-run differences, confused pairs
- ``confusion``     labelled confusion heatmaps with selectable cells
- ``prediction``    top-5 bar chart and saliency overlay for one image
- ``tuning``        model 7's search trials as parallel coordinates
- ``augmentation``  model 5's flip augmentation as an image grid
- ``embedding``     the embedding map: test images placed by their activations
- ``embedding_hover`` the map's hover thumbnails: their sprite and browser script
- ``training``      live loss/accuracy curves of a training job
- ``style``         shared colours and layout
"""
