"""MODEL_CARD.md: what a trained model is, how good it is against its baseline, and exactly
where it comes from (inputs by checksum, the runs that made them, config, code, device)."""

from __future__ import annotations

import json
from typing import Any

from ml.train.gate import GateResult


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(title: str, checkpoint: str, checkpoint_sha256: str, epoch: int, step: int,
               parameters: int, summary: dict[str, Any], gate: GateResult) -> str:
    figures = {k: v for k, v in summary.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    provenance = summary.get("provenance", {})
    lines = [
        f"# {title}", "",
        f"- checkpoint: `{checkpoint}` (sha256 {checkpoint_sha256})",
        f"- epoch: {epoch}, step: {step}, parameters: {parameters:,}",
        f"- quality gate: {'passed' if gate.passed else 'FAILED'}: {gate.sentence}", "",
        "## Figures", "", "| figure | value |", "| --- | --- |",
        *[f"| {k} | {_figure(v)} |" for k, v in sorted(figures.items())], ""]
    if provenance:
        lines += ["## Provenance", "",
                  f"- code version: `{provenance.get('code_version', 'unknown')}`",
                  f"- device: {provenance.get('device', 'unknown')}, "
                  f"{provenance.get('processes', 1)} process(es), torch "
                  f"{provenance.get('torch', '?')}, Python {provenance.get('python', '?')}", "",
                  "| input | kind | checksum | file |", "| --- | --- | --- | --- |"]
        for name, inp in provenance.get("inputs", {}).items():
            checksum = next((v for k, v in inp.items() if k.endswith("sha256") and v),
                            inp.get("fingerprint", ""))
            lines.append(f"| {name} | {inp.get('kind', 'file')} | `{checksum}` | "
                         f"`{inp.get('file', '')}` |")
        runs = provenance.get("dagster_runs", {})
        if runs:
            lines += ["", "| prepared by | Dagster run | materialized |", "| --- | --- | --- |",
                      *[f"| {asset} | `{run['run_id']}` | {run['materialized']} |"
                        for asset, run in sorted(runs.items())]]
        lines += ["", "### Training config", "", "```json",
                  json.dumps(provenance.get("config", {}), indent=1, sort_keys=True, default=str),
                  "```", ""]
    return "\n".join(lines)
