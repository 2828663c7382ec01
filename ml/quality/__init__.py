"""Data quality beyond missing and corrupt: per-image signals computed in the decode
verification pass (signals.py), the issues they flag with cleanvision's names and thresholds
(issues.py), and exact and near-duplicate groups (duplicates.py)."""
