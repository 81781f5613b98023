"""The README's two commands stay true: CI runs the test command verbatim, the example runs."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    install_and_run, install_and_test = bash_blocks()[:2]
    assert "torch==2.13.0" in install_and_run and "doctor fit examples/" in install_and_run
    assert install_and_test in (ROOT / ".ci/run").read_text()
    # torch is pinned first so pip never resolves an open torch requirement to a CUDA build
    assert install_and_test.index("torch==2.13.0") < install_and_test.index("-e")


def test_torch_requirement_admits_the_local_build():
    from packaging.requirements import Requirement

    text = (ROOT / "pyproject.toml").read_text()
    spec = re.search(r'"(torch[^"]*)"', text).group(1)
    assert "2.13.0" in Requirement(spec).specifier


@pytest.mark.slow
def test_quick_start_runs_on_the_bundled_example(cli, tmp_path):
    example = bash_blocks()[0].split("doctor fit ", 1)[1].split()[0]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    assert cli("fit", example, "--trials", "2", "--epochs", "5", "--quiet") == 0
    stem = Path(example).stem
    assert (tmp_path / "doctor-out" / stem / "report.html").exists()
    assert (tmp_path / "studies" / f"{stem}.db").exists()
