"""The Kubernetes code location (jobs/k8s.py; docs/scaling.md): the same assets, schedules and
sensors as definitions.py, with steps run as Kubernetes Jobs and trainers as GPU pods.

    IMAGEDS_K8S_IMAGE=registry.example.com/imageds:1.0 \
        dagster definitions validate -m definitions_k8s
"""

from __future__ import annotations

from definitions import build_definitions
from jobs.k8s import k8s_location_options
from ml.dataset_spec import load_datasets

datasets = load_datasets()
defs = build_definitions(datasets, **k8s_location_options(datasets))
