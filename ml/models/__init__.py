"""Network architectures, one module per architecture; `backbones` builds a feature extractor
by name for the trainers in ml/train."""
