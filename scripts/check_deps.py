"""`make lint`'s dependency check: what each distribution imports and what it declares agree, and
the lock files pin what is declared.

Distributions are the repository's pyproject.toml files (the server at the top, and any below it,
e.g. contract/). For each one:
- every third-party module its package imports belongs to a distribution it declares in
  `dependencies` (a sibling distribution of this repository too, by its name);
- every distribution in `dependencies` is imported by its package (nothing declared for nothing);
The code that ships in no distribution (tests/, bench/, scripts/, harness/) may import what any of them
declares at run time, plus the top project's `dev` extra.
The lock files (requirements/*.txt, written by `make lock`): dev.txt pins every requirement of
every distribution and extra, server.txt every run-time requirement of the server's image (at
dev.txt's versions: the image runs what the tests ran), build.txt the build backend; each pin
satisfies its requirement's bounds.

`python scripts/check_deps.py [ROOT]` (the repository by default). Imports are read with `ast`
(every `import`, also inside functions and `if TYPE_CHECKING:`); a module is mapped to its
distribution by the installed metadata of this virtualenv.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
UNSHIPPED = ("tests", "bench", "scripts", "harness")  # the top project's code that no distribution ships
SKIP = {".venv", "build", "dist", "node_modules", ".git"}


@dataclass
class Distribution:
    name: str
    directory: Path
    packages: list[str]  # top-level import names it ships
    requires: list[Requirement]
    extras: dict[str, list[Requirement]]
    build_requires: list[Requirement]
    imports: dict[str, set[Path]] = field(default_factory=dict)  # top-level module -> files

    @property
    def declared(self) -> set[str]:
        return {canonicalize_name(r.name) for r in self.requires}


def distributions() -> list[Distribution]:
    found = []
    for path in sorted(ROOT.rglob("pyproject.toml")):
        if SKIP & set(path.relative_to(ROOT).parts) or any(p.startswith(".") for p in path.relative_to(ROOT).parts):
            continue
        data = tomllib.loads(path.read_text())
        project = data["project"]
        find = data.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
        packages = sorted({p.split(".")[0].rstrip("*") for p in find.get("include", [])})
        if not packages:
            raise SystemExit(f"{path.relative_to(ROOT)}: say which packages it ships (tool.setuptools.packages.find)")
        found.append(
            Distribution(
                name=canonicalize_name(project["name"]),
                directory=path.parent,
                packages=packages,
                requires=[Requirement(r) for r in project.get("dependencies", [])],
                extras={k: [Requirement(r) for r in v] for k, v in project.get("optional-dependencies", {}).items()},
                build_requires=[Requirement(r) for r in data.get("build-system", {}).get("requires", [])],
            )
        )
    return found


def python_files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*.py")):
        if not SKIP & set(path.relative_to(directory).parts):
            yield path


def imported(files: list[Path]) -> dict[str, set[Path]]:
    """Absolute imports' top-level names, with the files that import them."""
    found: dict[str, set[Path]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path)
    return found


def local_modules(files: list[Path]) -> set[str]:
    """Modules a tree makes importable itself (tests/support, bench/common.py, conftest...)."""
    return {p.stem for p in files} | {p.parent.name for p in files if p.name == "__init__.py"}


def third_party(imports: dict[str, set[Path]], first_party: set[str]) -> dict[str, set[Path]]:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {m: files for m, files in imports.items() if m not in stdlib and m not in first_party}


def owners(module: str, siblings: dict[str, str], installed: dict[str, list[str]]) -> set[str]:
    if module in siblings:
        return {siblings[module]}
    return {canonicalize_name(d) for d in installed.get(module, [])}


def where(files: set[Path]) -> str:
    shown = sorted(str(f.relative_to(ROOT)) for f in files)
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")


def check_imports(dists: list[Distribution]) -> list[str]:
    problems = []
    installed = packages_distributions()
    siblings = {package: d.name for d in dists for package in d.packages}
    for dist in dists:
        files = [f for package in dist.packages for f in python_files(dist.directory / package)]
        dist.imports = third_party(imported(files), set(dist.packages))
        used: set[str] = set()
        for module, files_ in sorted(dist.imports.items()):
            candidates = owners(module, siblings, installed)
            if not candidates:
                problems.append(
                    f"{dist.name}: imports {module} ({where(files_)}), which no installed distribution provides"
                )
            elif not candidates & dist.declared:
                problems.append(
                    f"{dist.name}: imports {module} ({where(files_)}) but does not declare "
                    f"{' or '.join(sorted(candidates))} in its dependencies"
                )
            used |= candidates
        for unused in sorted(dist.declared - used):
            problems.append(f"{dist.name}: declares {unused} but never imports it")

    top = next(d for d in dists if d.directory == ROOT)
    allowed = {canonicalize_name(r.name) for d in dists for r in d.requires} | {d.name for d in dists}
    allowed |= {canonicalize_name(r.name) for r in top.extras.get("dev", [])}
    files = [f for tree in UNSHIPPED for f in python_files(ROOT / tree)]
    for module, files_ in sorted(third_party(imported(files), local_modules(files) | set(siblings)).items()):
        candidates = owners(module, siblings, installed)
        if not candidates & allowed:
            problems.append(
                f"{'/'.join(UNSHIPPED)}: {module} ({where(files_)}) is declared nowhere: "
                f"add {' or '.join(sorted(candidates)) or 'its distribution'} to the dev extra"
            )
    return problems


def read_lock(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line):
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def check_locks(dists: list[Distribution]) -> list[str]:
    problems = []
    locks = {name: LOCKS / f"{name}.txt" for name in ("dev", "server", "build")}
    missing = [str(p.relative_to(ROOT)) for p in locks.values() if not p.exists()]
    if missing:
        return [f"no lock file {', '.join(missing)}: run make lock"]
    dev, server, build = (read_lock(locks[n]) for n in ("dev", "server", "build"))
    local = {d.name for d in dists}
    top = next(d for d in dists if d.directory == ROOT)
    # The server's image: the top distribution and the siblings it needs, at run time.
    image = {top.name} | {canonicalize_name(r.name) for r in top.requires} & local

    def pinned(lock: dict[str, Version], lock_name: str, requirement: Requirement, whose: str) -> None:
        name = canonicalize_name(requirement.name)
        if name in local:
            return
        if name not in lock:
            problems.append(f"{whose} requires {requirement}, which {lock_name} does not pin: run make lock")
        elif lock[name] not in requirement.specifier:
            problems.append(f"{whose} requires {requirement}; {lock_name} pins {lock[name]}: run make lock")

    for dist in dists:
        for requirement in dist.requires + [r for extra in dist.extras.values() for r in extra]:
            pinned(dev, "requirements/dev.txt", requirement, dist.name)
        if dist.name in image:
            for requirement in dist.requires:
                pinned(server, "requirements/server.txt", requirement, dist.name)
        for requirement in dist.build_requires:
            pinned(build, "requirements/build.txt", requirement, f"{dist.name} (to build)")
    for name, version in sorted(server.items()):
        if dev.get(name) != version:
            problems.append(f"requirements/server.txt pins {name}=={version}, dev.txt {dev.get(name)}: run make lock")
    return problems


def main() -> int:
    dists = distributions()
    problems = check_imports(dists) + check_locks(dists)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        names = ", ".join(d.name for d in dists)
        print(f"dependencies: imports and declarations agree, and the locks pin them ({names})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
