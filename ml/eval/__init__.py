"""Evaluation of trained models: face verification with the insightface / AdaFace protocol."""
