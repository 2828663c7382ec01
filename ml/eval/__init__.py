"""Evaluation of trained models: face verification with the insightface / AdaFace protocol
(`verification`), weighted kNN of embeddings (`knn`), classification accuracy figures
(`classification`)."""
