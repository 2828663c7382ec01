"""The quality gate a trained model must pass before it counts as a model: its figure beats the
baseline the same run measured with the same protocol by at least a margin.

A model that did not learn (diverged, shuffled labels, a data bug) scores about its baseline, so
the gate turns "training finished" into "training learnt something". The `<dataset>/model` asset
runs it as a blocking asset check (`model_beats_baseline`); `python -m ml.train` prints it.

| task | figure | baseline | default margin |
| --- | --- | --- | --- |
| face | val_accuracy (10-fold verification) | raw_pixel_accuracy (the same pairs on pixels) | 0.15 |
| classify | mean_class_accuracy | majority_mean_class_accuracy (always the biggest class) | 0.05 |
| contrastive | knn_accuracy | knn_accuracy_random_init (the same network untrained) | 0.02 |
| unet | test_psnr_db | identity_psnr_db (the input as the prediction) | 0.1 |

A dataset sets its own margin with `train: {gate_margin: 0.2}`. Where the summary also gives
the figure's chance scatter on its evaluation set (classify: `mean_class_accuracy_chance_stderr`,
the standard error of a uniform guess), the required margin is at least two of those: on a few
dozen test images a model that learnt nothing scores 0.05 above its baseline by luck one time in
four, and the gate must not pass it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


STDERRS_REQUIRED = 2.0   # a margin of at least two chance standard errors (about 1 in 40 by luck)


@dataclass(frozen=True)
class QualityGate:
    figure: str           # the summary key of the model's figure
    baseline: str         # the summary key of the baseline's figure (same data, same protocol)
    margin: float         # how far above the baseline the figure must be
    what: str             # the baseline in words, for the sentence
    stderr: str | None = None   # the summary key of the figure's chance standard error, if any

    def judge(self, summary: Mapping[str, Any], margin: float | None = None) -> "GateResult":
        margin = self.margin if margin is None else float(margin)
        if self.stderr and self.stderr in summary:
            margin = max(margin, STDERRS_REQUIRED * float(summary[self.stderr]))
        missing = [k for k in (self.figure, self.baseline) if k not in summary]
        if missing:
            return GateResult(False, f"the summary has no {' or '.join(missing)}: the trainer "
                                     "did not evaluate the model", math.nan, math.nan, margin)
        figure, baseline = float(summary[self.figure]), float(summary[self.baseline])
        passed = math.isfinite(figure) and figure >= baseline + margin
        verdict = "beats" if passed else "does not beat"
        sentence = (f"{self.figure} {figure:.4g} {verdict} {self.what} ({self.baseline} "
                    f"{baseline:.4g}) by the required {margin:.3g} (margin {figure - baseline:+.4g})")
        if not passed:
            sentence += ("; the model did not learn: check the labels, the learning rate and the "
                         "number of epochs")
        return GateResult(passed, sentence, figure, baseline, margin)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    sentence: str
    figure: float
    baseline: float
    margin: float


GATES: dict[str, QualityGate] = {
    "face": QualityGate("val_accuracy", "raw_pixel_accuracy", 0.15,
                        "raw-pixel verification of the same pairs"),
    "classify": QualityGate("mean_class_accuracy", "majority_mean_class_accuracy", 0.05,
                            "always answering the biggest class",
                            stderr="mean_class_accuracy_chance_stderr"),
    "contrastive": QualityGate("knn_accuracy", "knn_accuracy_random_init", 0.02,
                               "the untrained network"),
    "unet": QualityGate("test_psnr_db", "identity_psnr_db", 0.1,
                        "returning the input unchanged"),
}
