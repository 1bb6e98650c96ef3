"""Standing promises checked on the source tree itself."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from orchat import errors
from orchat.settingstable import SETTINGS
from tests.conftest import REPO

RUNTIME_FILES = sorted(REPO.glob("orchat/**/*.py")) + sorted(p for p in (REPO / "bin").iterdir() if p.is_file())


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_code_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"orchat", "__future__"}
    offenders = {f"{p.relative_to(REPO)}: {m}" for p in RUNTIME_FILES for m in imported_modules(p) - allowed}
    assert offenders == set()


def test_every_orchat_module_uses_postponed_annotations_for_python_3_9() -> None:
    missing = [
        str(p.relative_to(REPO))
        for p in REPO.glob("orchat/**/*.py")
        if p.read_text().strip() and "def " in p.read_text() and "from __future__ import annotations" not in p.read_text()
    ]
    assert missing == []


def test_no_module_is_named_after_a_stdlib_module() -> None:
    clashes = [p.stem for p in REPO.glob("orchat/**/*.py") if p.stem in sys.stdlib_module_names and p.stem not in ("__init__", "__main__")]
    assert clashes == []


def test_bin_entry_points_are_thin_executable_system_python_shims() -> None:
    for path in (REPO / "bin").iterdir():
        text = path.read_text()
        assert os.access(path, os.X_OK), path
        if text.startswith("#!/usr/bin/python3"):
            assert text.startswith("#!/usr/bin/python3 -I\n"), path
            code_lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            assert len(code_lines) <= 20, path
            assert "raise SystemExit(main(" in text, path


def test_no_sys_exit_inside_the_package_except_cli_and_main() -> None:
    offenders = []
    for path in REPO.glob("orchat/**/*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        if re.search(r"\bsys\.exit\(", path.read_text()):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_setup_commands() -> None:
    head = "\n".join(readme().splitlines()[:8])
    assert "make demo" in head and "make test" in head


def test_readme_settings_table_matches_the_settings() -> None:
    text = readme()
    table = text.split("<!-- settings-table")[1].split("<!-- /settings-table -->")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(ORCHAT_[A-Z_]+)` \| `?([^|`]*)`? \|", table, re.M)}
    assert rows == {s.name: s.default for s in SETTINGS}


def test_readme_documents_every_exit_code() -> None:
    codes = {value for name, value in vars(errors).items() if name.startswith("EX_")}
    table = readme().split("## Exit codes")[1].split("\n## ")[0]
    documented = {int(n) for n in re.findall(r"^\| (\d+)(?: / (\d+))? \|", table, re.M) for n in n if n}
    assert codes <= documented


def test_no_tracked_file_holds_merge_conflict_markers() -> None:
    # A conflicted merge once landed with its markers in the README: no file may carry them.
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    marked = []
    for name in filter(None, listed):
        path = REPO / name.decode()
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        for line in path.read_bytes().splitlines():
            if line.startswith((b"<<<<<<< ", b">>>>>>> ")) or line == b"=======":
                marked.append(name.decode())
                break
    assert marked == []
