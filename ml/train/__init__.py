"""Training: one module per task, runnable without Dagster (`python -m ml.train TASK ...`, or under
torchrun for several processes). Dagster launches the same entry point through Pipes.

Shared pieces: `report` (events out of the trainer), `distributed` (torchrun / DDP environment),
`checkpoint` (atomic state_dict checkpoints and resume), `schedule` (optimizers, warmup + cosine),
`config` (task configs from YAML + overrides), `loop` (seeding, DDP placement, autocast, resume
and per-epoch checkpoints), `curves` (the curves PNG). Tasks: face, contrastive, classify, unet.
"""
