"""The five-point face template, in one place: the CASIA-WebFace / SphereFace reference of
seed 002's 112x112 crops (left eye, right eye, nose tip, left and right mouth corner). It is the
96x112 template, so on a 112x112 image it sits 8 px left of the centre; insightface/ArcFace
crops (norm_crop) are the same points 8 px to the right. ml.transforms places its occlusions on
them and demo.sample_data draws its faces on them. (No torch here: the demo's generator
imports it.)"""

from __future__ import annotations

Point = tuple[float, float]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")
CASIA_LANDMARKS_112: tuple[Point, ...] = (
    (30.2946, 51.6963), (65.5318, 51.5014), (48.0252, 71.7366),
    (33.5493, 92.3655), (62.7299, 92.2041))
ARCFACE_SHIFT_X = 8.0      # CASIA -> insightface/ArcFace 112x112 crops
