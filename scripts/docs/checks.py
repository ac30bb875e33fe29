"""What `make lint` checks besides the generated pages: that README.md and docs/*.md point only at
what exists (links and their anchors, repository paths and `orchestrator.package.module[.name]`
names in backquotes, `orchestrator VERB --option` in code), and that every error code of the
contract is explained. A moved file, a renamed name or a changed command fails the check until the
docs follow it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

from page import ROOT


def anchors(page: Path) -> set[str]:
    """The page's heading anchors, as GitHub makes them."""
    headings = re.findall(r"^#+\s+(.*)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def python_name_exists(root: Path, dotted: str) -> bool:
    """Whether `orchestrator.a.b.name` is a package, a module, or a name a module defines (read, not imported)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.exists():
            rest = parts[cut:]
            if not rest:
                return True
            defined = rf"^(?:class|def|async def)\s+{rest[0]}\b|^{rest[0]}\s*[:=]"
            return len(rest) <= 2 and re.search(defined, module.read_text(), re.M) is not None
    return False


def exists(path: Path) -> bool:
    """A file, or a folder holding one (a folder left with nothing but `__pycache__` is gone)."""
    if path.is_dir():
        return any(p.is_file() and "__pycache__" not in p.parts for p in path.rglob("*"))
    return path.exists()


def stale_references(pages: list[Path], root: Path = ROOT) -> Iterator[str]:
    for page in pages:
        text, where = page.read_text(), page.relative_to(root)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                yield f"{where}: the link {target} leads nowhere"
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                yield f"{where}: {dest.name} has no heading #{anchor}"
        for token in re.findall(r"`([^`\s]+)`", text):
            if re.fullmatch(r"orchestrator(\.\w+){2,}", token) and not python_name_exists(root, token):
                yield f"{where}: `{token}` does not exist"
                continue
            path = token.split("::")[0]
            if not re.fullmatch(r"[\w.-]+(/[\w.*-]+)+/?|[\w.-]+/", path):
                continue
            bases = [b for b in (root, root / "orchestrator") if exists(b / path.split("/")[0])]
            if not bases and not re.search(r"\.(py|sh|ya?ml|json|toml|md|txt|conf)$", path):
                continue  # not the repository's (`public/`, `REGISTRY/site_0042`)
            if not any(any(b.glob(path)) if "*" in path else exists(b / path) for b in bases):
                yield f"{where}: `{token}` does not exist"


CODE_PAGES = ("contract.md", "files.md")  # where the error codes are explained


def undocumented_codes(docs: Path = ROOT / "docs") -> Iterator[str]:
    """Every error code of the contract is explained on a page that explains codes."""
    from orchestrator_contract.codes import ErrorCode

    text = "".join((docs / page).read_text() for page in CODE_PAGES)
    for code in ErrorCode:
        if f"`{code.value}`" not in text:
            yield f"the error code `{code.value}` is explained in none of docs/{', docs/'.join(CODE_PAGES)}"


def cli_options() -> dict[str, set[str]]:
    """Every verb of the `orchestrator` command line, with every option it or its actions take."""
    from orchestrator import cli

    def options(parser: argparse.ArgumentParser) -> set[str]:
        found: set[str] = set()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= options(sub)
        return found

    (verbs,) = (a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {verb: options(parser) for verb, parser in verbs.choices.items()}


def stale_commands(pages: list[Path], root: Path = ROOT) -> Iterator[str]:
    """`orchestrator VERB --flag` in code spans and blocks: the verb and its flags must exist."""
    known = cli_options()
    for page in pages:
        text, where = page.read_text(), page.relative_to(root)
        blocks = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
        for span in re.findall(r"`([^`\n]+)`", text) + blocks:
            for command in re.finditer(r"(?:^|[\s\"'(])orchestrator ([a-z][a-z-]*)([^#]*)", span):
                verb, rest = command[1], command[2]
                if verb not in known:
                    yield f"{where}: `orchestrator {verb}` is no command"
                    continue
                for flag in re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", rest):
                    if flag not in known[verb]:
                        yield f"{where}: `orchestrator {verb}` takes no {flag}"
