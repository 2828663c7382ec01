"""The `verify:` section's options (VerifyConfig), and a user's seed-000 config read as one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import Field

from ml.errors import ConfigError
from ml.imageio import DEFAULT_MAX_PIXELS
from ml.options import Bool, Float, Int, Options, Text

LEVELS = ("exists", "decode")


class VerifyConfig(Options):
    """The dataset's `verify:` section: seed 000's DATA.HYBRID.VERIFY_IMAGES plus `level`,
    `max_pixels` and `signals`."""

    enabled: Bool = Field(True, description="Verify at all (off: nothing is read and the check passes)")
    max_missing_ratio: Annotated[Float, Field(ge=0.0, le=1.0)] = Field(0.01, description="The check `images_within_thresholds` fails (and blocks everything downstream) above this ratio of missing + corrupt images among the samples the dataset uses")
    max_missing_count: Annotated[Int, Field(ge=0)] = Field(100, description="The same check fails above this many of them")
    num_workers: Annotated[Int, Field(ge=1)] = Field(8, description="Parallel workers (decode: processes, at most one per core)")
    chunk_size: Annotated[Int, Field(ge=1)] = Field(1000, description="Images per work unit, at most")
    log_missing: Bool = Field(True, description="Log the first bad images by name")
    report_path: Text = Field("{output_dir}/assets/missing_images_report.json", description="Seed 000's JSON report; `{output_dir}` is the dataset's output folder, which must hold it (it replaces only an earlier report)")
    allow_missing_images: Bool = Field(False, description="Training replaces bad images with counted placeholders instead of stopping")
    level: Literal[LEVELS] = Field("decode", description="`exists` (one listing per folder) or `decode` (every image decoded: truncated and garbled files are caught, and the quality signals measured)")
    max_pixels: Annotated[Int, Field(ge=1)] = Field(DEFAULT_MAX_PIXELS, description="Larger images are refused as decompression bombs, from the header")
    signals: Bool = Field(True, description="At level decode, also each image's quality signals (perceptual hash, blur, brightness; ml/quality)")

    SECTION: ClassVar[str] = "verify"

    @classmethod
    def of_section(cls, section: Any, base_dir: Path, where: str) -> "VerifyConfig":
        """The `verify:` section: its options, or a user's seed-000 config used as is:
        `seed000_config: their.yaml` (the file's DATA.HYBRID section is read; options beside it
        apply on top) or the `DATA:` / `HYBRID:` mapping pasted under `verify:`."""
        if isinstance(section, dict) and "seed000_config" in section:
            path = Path(os.path.expanduser(str(section["seed000_config"])))
            path = path if path.is_absolute() else base_dir / path
            try:
                doc = yaml.safe_load(path.read_text())
            except FileNotFoundError:
                raise ConfigError(f"{where}.seed000_config {path} does not exist") from None
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path} is not valid YAML: {exc}") from None
            extra = {k: v for k, v in section.items() if k != "seed000_config"}
            return cls.from_seed000_yaml(doc).updated(extra, where)
        if isinstance(section, dict) and any(str(k).upper() in ("DATA", "HYBRID", "VERIFY_IMAGES")
                                             for k in section):
            return cls.from_seed000_yaml(section)
        return cls.parse(section, where)

    @classmethod
    def from_seed000_yaml(cls, hybrid_section: dict) -> "VerifyConfig":
        """Build from a seed-000 `DATA.HYBRID` mapping as the user wrote it (the whole `DATA`
        mapping or a document holding it also work). Keys other than VERIFY_IMAGES and
        ALLOW_MISSING_IMAGES (USE_HYBRID, IMAGES_DIR, ...) belong to the source and are ignored;
        an unknown key inside VERIFY_IMAGES is a ConfigError, so a typo is not silently lost."""
        section = _hybrid_section(hybrid_section)
        verify = section.get("VERIFY_IMAGES") or {}
        if not isinstance(verify, dict):
            raise ConfigError(f"DATA.HYBRID.VERIFY_IMAGES must be a mapping, got {verify!r}")
        values: dict[str, Any] = {}
        for key, value in verify.items():
            name = str(key).lower()
            if name not in _SEED000_FIELDS:
                raise ConfigError(f"DATA.HYBRID.VERIFY_IMAGES.{key} is not a known setting; "
                                  f"known: {', '.join(sorted(k.upper() for k in _SEED000_FIELDS))}")
            values[name] = value
        if "ALLOW_MISSING_IMAGES" in section:
            values["allow_missing_images"] = section["ALLOW_MISSING_IMAGES"]
        return cls.parse(values, "DATA.HYBRID.VERIFY_IMAGES", spelling=str.upper)


_SEED000_FIELDS = {"enabled", "max_missing_ratio", "max_missing_count", "num_workers",
                   "chunk_size", "log_missing", "report_path", "level", "max_pixels"}


def _hybrid_section(section: dict) -> dict:
    if not isinstance(section, dict):
        raise ConfigError(f"expected the DATA.HYBRID mapping of a seed-000 config, got {section!r}")
    section = {str(k).upper(): v for k, v in section.items()}
    for outer in ("DATA", "HYBRID"):
        if isinstance(section.get(outer), dict) and "VERIFY_IMAGES" not in section:
            return _hybrid_section(section[outer])
    return section
