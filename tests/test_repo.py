"""The repository's promises to a newcomer: CI runs the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return re.search(r"```sh\n(.*?)\n```", section, re.S).group(1).strip()


def test_ci_runs_the_readme_test_command():
    cmd = readme_block("Run the tests")
    lines = [ln for ln in (ROOT / ".ci/run").read_text().splitlines()
             if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert lines == [cmd]


def test_run_command_installs_and_starts():
    cmd = readme_block("Run it")
    assert cmd.startswith("python3 -m venv .venv") and "pip install" in cmd and "backprop-lab" in cmd


def test_top_level_layout():
    for name in ("pyproject.toml", "README.md", "engine", "tests", "Dockerfile"):
        assert (ROOT / name).exists(), name
