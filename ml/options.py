"""Typed options, declared once: one pydantic model per section of a dataset declaration (resize,
splits, verify, quality, each packed format, train), with each option's type, default, bounds
and description (no Dagster here).

From each model come:
- the checked section a `DatasetSpec` holds (ml/dataset_spec.py): a bad value fails when the
  definitions load, as a ConfigError naming the dataset, the section and the option;
- the Launchpad's run config (assets/options.py `run_config_class`: every field optional, a
  choice as a dropdown), merged over the section with `Options.updated`;
- the README's option tables (`python -m ml.options README.md` rewrites them;
  tests/ml/test_options.py fails when they drift).

Scalars are strict where YAML could hide a mistake: `Int` refuses 2.5, "3" and true, `Bool`
refuses "yes" and 1, `Float` refuses true and nan but takes "1e-3" (YAML 1.1 reads that as
text).
"""

from __future__ import annotations

import enum
import re
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Literal, Mapping, TypeVar

import annotated_types
from pydantic import AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Strict, ValidationError
from pydantic.fields import FieldInfo

from ml.errors import ConfigError


def _not_true_or_false(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(_not_true_or_false), AllowInfNan(False)]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict()]

O = TypeVar("O", bound="Options")


class Options(BaseModel):
    """A section's options: unknown keys are errors, values are checked, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SECTION: ClassVar[str] = ""       # how errors name the section when built in code

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(explain(exc, type(self), self.SECTION or type(self).__name__)) \
                from None

    # Only a call in code runs this __init__: validating a mapping (parse, nested sections)
    # takes pydantic's own path, so errors there carry the caller's `where`.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def parse(cls: type[O], values: Any, where: str,
              spelling: Callable[[str], str] = str) -> O:
        """The section from its mapping (None: every default); `where` names it in errors,
        e.g. "dataset 'faces': resize", `spelling` the options as the user wrote them."""
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where} must be a mapping of options, got "
                              f"{type(values).__name__}: {values!r}")
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise ConfigError(explain(exc, cls, where, spelling)) from None

    def updated(self: O, changes: Mapping[str, Any], where: str) -> O:
        """These options with `changes` (a run config's overrides), checked again as a whole."""
        if not changes:
            return self
        return self.parse({**self.model_dump(), **changes}, where)


def explain(exc: ValidationError, model: type[BaseModel], where: str,
            spelling: Callable[[str], str] = str) -> str:
    """One line per problem: the option's dotted name, the value given, what is wrong and the
    option's description (what it is for)."""
    lines = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        dotted = ".".join(spelling(p) for p in loc)
        if error["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1]) or model
            lines.append(f"{where}.{dotted}: unknown option; known: "
                         f"{', '.join(owner.model_fields)}")
            continue
        message = (str(error["ctx"]["error"]) if error["type"] == "value_error" else
                   "input should be a list" if error["type"] == "tuple_type" else error["msg"])
        if not loc:                          # a check of the whole section
            lines.append(f"{where}: {message}")
            continue
        field = _field_at(model, loc)
        hint = f" ({field.description})" if field is not None and field.description else ""
        given = f" {error['input']!r}" if error["type"] != "missing" else ""
        lines.append(f"{where}.{dotted}{given}: {message[:1].lower()}{message[1:]}{hint}")
    return "; ".join(lines)


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(part)
        inner = field and _inner_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _field_at(model: type[BaseModel], loc: list[str]) -> FieldInfo | None:
    owner = _model_at(model, loc[:-1]) if len(loc) > 1 else model
    return owner.model_fields.get(loc[-1]) if owner is not None else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


# ----------------------------------------------------------------------------- what fields are

def plain_type(annotation: Any) -> Any:
    """The annotation without Annotated's metadata and without None (Optional[X] -> X)."""
    if typing.get_origin(annotation) is Annotated:
        return plain_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return plain_type(args[0]) if len(args) == 1 else annotation
    return annotation


def choices_of(annotation: Any) -> tuple[str, ...] | None:
    """A Literal's values (a field whose value is one of a list), else None."""
    plain = plain_type(annotation)
    return typing.get_args(plain) if typing.get_origin(plain) is Literal else None


def type_text(field: FieldInfo) -> str:
    """How the README names a field's type, with its bounds: `integer >= 1`, `jpeg | png`."""
    plain = plain_type(field.annotation)
    values = choices_of(plain)
    if values is not None:
        return " \\| ".join(str(v) for v in values)
    origin = typing.get_origin(plain)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(plain) if a is not Ellipsis]
        return f"list of {_NAMES.get(plain_type(args[0]), 'values') if args else 'values'}"
    if origin is dict:
        return "mapping"
    if isinstance(plain, type) and issubclass(plain, BaseModel):
        return "mapping (below)"
    text = _NAMES.get(plain, getattr(plain, "__name__", str(plain)))
    if field.annotation is not plain and typing.get_origin(field.annotation) in (
            typing.Union, types.UnionType):
        text += " or null"
    bounds = []
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                bounds.append(f"{sign} {getattr(meta, attr)}")
    return " ".join([text, ", ".join(bounds)]).strip()


_NAMES = {int: "integer", float: "number", bool: "true / false", str: "text", Path: "path"}


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    if value is None:
        return "null"
    return f"`{value}`".replace("'", "") if isinstance(value, (list, dict)) else f"`{value}`"


def markdown_table(model: type[BaseModel]) -> str:
    """The model's options as a Markdown table: option, type, default, what it does."""
    if not model.model_fields:
        return "(no options: declaring the key builds it)"
    rows = ["| option | type | default | what it does |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        text = (field.description or "").replace("|", "\\|").replace("\n", " ")
        text = text[:1].upper() + text[1:]
        rows.append(f"| `{name}` | {type_text(field)} | {default_text(field)} | {text} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- README tables

BLOCK = re.compile(r"(<!-- options: (?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /options -->)",
                   re.DOTALL)


def documented_models() -> dict[str, type[BaseModel]]:
    """Every options model the README documents, by the name its table carries."""
    from ml.dataset_spec import documented_options     # the sections' registry lives there
    return documented_options()


def with_tables(text: str, models: Mapping[str, type[BaseModel]]) -> str:
    """`text` with each `<!-- options: NAME -->` block's body replaced by NAME's table."""
    def table(match: re.Match) -> str:
        name = match.group("name")
        if name not in models:
            raise ConfigError(f"README block <!-- options: {name} --> names no options model; "
                              f"known: {', '.join(models)}")
        return f"{match.group(1)}{markdown_table(models[name])}\n{match.group(4)}"
    return BLOCK.sub(table, text)


def main(argv: list[str]) -> int:
    """`python -m ml.options README.md`: rewrite the README's option tables from the models."""
    path = Path(argv[0] if argv else "README.md")
    text = path.read_text()
    new = with_tables(text, documented_models())
    if new != text:
        path.write_text(new)
        print(f"{path}: option tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
