"""The image-dataset library: image ops, catalog sources, verification, splits, formats, torch
datasets and training. It never imports Dagster: training runs where only torch is installed."""
