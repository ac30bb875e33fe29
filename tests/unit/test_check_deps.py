"""scripts/check_deps.py (`make lint`) on a small repository of its own: it names each import not
declared, each declaration not imported, and each requirement the locks do not pin."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import docker
import yarl

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_deps.py"
LOCK = "{name}=={version} \\\n    --hash=sha256:00\n"


def repository(root: Path, dependencies: list[str], imports: str, pins: dict[str, str]) -> Path:
    (root / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=68"]
        [project]
        name = "top"
        version = "1"
        dependencies = {dependencies!r}
        [project.optional-dependencies]
        dev = ["pytest>=8"]
        [tool.setuptools.packages.find]
        include = ["top*"]
        """)
    )
    (root / "top").mkdir()
    (root / "top" / "__init__.py").write_text(imports)
    (root / "tests").mkdir()
    (root / "tests" / "test_top.py").write_text("import pytest\nimport top\nfrom support import x\n")
    (root / "tests" / "support.py").write_text("x = 1\n")
    (root / "requirements").mkdir()
    every = {"pytest": "8.3.0", **pins}
    (root / "requirements" / "dev.txt").write_text("".join(LOCK.format(name=n, version=v) for n, v in every.items()))
    (root / "requirements" / "server.txt").write_text("".join(LOCK.format(name=n, version=v) for n, v in pins.items()))
    (root / "requirements" / "build.txt").write_text(LOCK.format(name="setuptools", version="70.0"))
    return root


def check(root: Path) -> tuple[int, str]:
    done = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_imports_declared_and_pinned_pass(tmp_path: Path) -> None:
    pins = {"docker": docker.__version__, "yarl": yarl.__version__}
    code, out = check(repository(tmp_path, ["docker>=7", "yarl"], "import docker\nfrom yarl import URL\n", pins))
    assert code == 0, out


def test_an_undeclared_import_and_an_unused_declaration_are_named(tmp_path: Path) -> None:
    root = repository(tmp_path, ["docker>=7"], "def f():\n    import yarl\n", {"docker": "7.1.0"})
    code, out = check(root)
    assert code == 1
    assert "top: imports yarl (top/__init__.py) but does not declare yarl" in out
    assert "top: declares docker but never imports it" in out


def test_a_requirement_the_locks_do_not_pin_or_pin_outside_its_bounds_is_named(tmp_path: Path) -> None:
    root = repository(tmp_path, ["docker>=7,<8", "yarl"], "import docker, yarl\n", {"docker": "8.0.0"})
    code, out = check(root)
    assert code == 1
    assert "top requires docker<8,>=7; requirements/dev.txt pins 8.0.0" in out
    assert "top requires yarl, which requirements/dev.txt does not pin" in out


def test_tests_may_import_only_what_some_distribution_or_the_dev_extra_declares(tmp_path: Path) -> None:
    root = repository(tmp_path, ["docker>=7"], "import docker\n", {"docker": "7.1.0"})
    (root / "tests" / "test_more.py").write_text("import yarl\n")
    code, out = check(root)
    assert code == 1 and "yarl (tests/test_more.py) is declared nowhere" in out, out
