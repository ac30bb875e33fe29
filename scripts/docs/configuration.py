"""docs/configuration.md from `Settings` (orchestrator/config/, a module per group): every field's variable, type,
bounds and default from the model, and what it does from the comment above it in the source (a
comment block documents the fields that follow it, up to a blank line; `# --- name ---` lines start
a section)."""

from __future__ import annotations

import ast
import inspect
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from page import GENERATED, cell
from pydantic.fields import FieldInfo

from orchestrator.config import Settings


@dataclass(frozen=True)
class Documented:
    section: str
    names: list[str]
    comment: str


def group_sources() -> list[tuple[Path, str]]:
    """Each group of `Settings`: its module's file and its class, in the order of Settings' bases."""
    return [(Path(inspect.getsourcefile(base) or ""), base.__name__) for base in Settings.__bases__]


def documented_fields(source: str, name: str = "Settings") -> list[Documented]:
    """A settings class's fields in source order, grouped by the comment block above them, with
    their section."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    comments = {token.start[0]: token.string for token in tokens if token.type == tokenize.COMMENT}
    lines = source.splitlines()
    (settings,) = (n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name)
    fields: list[Documented] = []
    section, block_end = "", -1
    for node in settings.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        first = node.lineno
        above: list[str] = []
        line = first - 1
        while line in comments and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        headers = [c for c in above if re.match(r"#\s*---", c)]
        if headers:
            section = re.sub(r"^#\s*-+\s*|\s*-+$", "", headers[-1]).strip()
            above = above[above.index(headers[-1]) + 1 :]
        if above or headers or block_end != first - 1:  # a comment, a section or a blank line ends a group
            fields.append(Documented(section, [], " ".join(c.lstrip("#").strip() for c in above)))
        block_end = node.end_lineno or first
        fields[-1].names.append(node.target.id)
    return fields


def _choices(annotation: Any) -> list[str]:
    """The values of a Literal, through Optional and Annotated."""
    if get_origin(annotation) is Literal:
        return [arg for arg in get_args(annotation) if isinstance(arg, str)]
    return [choice for arg in get_args(annotation) for choice in _choices(arg)]


def type_of(field: FieldInfo) -> str:
    annotation = field.annotation
    names = {str: "text", int: "integer", float: "number", bool: "true/false", Path: "path"}
    if annotation in names:
        kind = names[annotation]
    elif annotation == list[str]:
        kind = "list"
    elif annotation == Path | None:
        kind = "path, optional"
    elif choices := _choices(annotation):
        kind = "one of " + ", ".join(choices) + (", optional" if type(None) in get_args(annotation) else "")
    else:
        kind = str(annotation)
    bounds = []
    for rule in field.metadata:  # annotated_types' Ge, Gt, Le, Lt, MinLen, and pydantic's pattern
        for attribute, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(rule, attribute, None) is not None:
                bounds.append(f"{sign} {number(getattr(rule, attribute))}")
        if getattr(rule, "min_length", None) is not None:
            bounds.append(f"at least {rule.min_length} characters")
        if getattr(rule, "pattern", None):
            bounds.append(f"`{rule.pattern}`")
    return ", ".join([kind, *bounds])


def number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def default_of(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        # A list of models (DATABASE_SERVERS) shows their names.
        return f"`{','.join(str(getattr(v, 'name', v)) for v in value)}`" if value else "unset"
    if isinstance(value, int | float):
        return f"`{number(value)}`"
    return f"`{value}`" if str(value) else '`""`'


def configuration_page() -> tuple[str, list[str]]:
    """The page, and the settings it cannot document (no comment above them)."""
    prefix = Settings.model_config.get("env_prefix", "")
    out = [
        GENERATED.format(source="`Settings` in orchestrator/config/"),
        "",
        "# Configuration",
        "",
        f"Every setting of the orchestrator, read once from the environment with the prefix `{prefix}`",
        "(`orchestrator/config/`, a module per group). Defaults fit the local stack; `compose.yaml` sets",
        "what production changes. Lists are comma-separated. The local stack's own variables",
        "(`scripts/stack-up.sh`) are in [development.md](development.md#the-local-stack-scriptsstack-upsh).",
    ]
    undocumented: list[str] = []
    section = None
    groups = [field for path, name in group_sources() for field in documented_fields(path.read_text(), name)]
    for group in groups:
        if group.section != section:
            section = group.section
            out += ["", f"## {section[:1].upper()}{section[1:]}", "", "| variable | type | default | what |"]
            out.append("| --- | --- | --- | --- |")
        if not group.comment:
            undocumented += group.names
        fields = [Settings.model_fields[name] for name in group.names]
        variables = "<br>".join(f"`{prefix}{name.upper()}`" for name in group.names)
        types = "<br>".join(cell(type_of(field)) for field in fields)
        defaults = "<br>".join(cell(default_of(field)) for field in fields)
        out.append(f"| {variables} | {types} | {defaults} | {cell(group.comment)} |")
    undocumented += sorted(set(Settings.model_fields) - {name for group in groups for name in group.names})
    return "\n".join(out) + "\n", undocumented
