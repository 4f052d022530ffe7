"""The README's set-up commands and CI stay in step."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
  return [
    line.strip()
    for line in (ROOT / "README.md").read_text().splitlines()
    if line.startswith("    python3 -m venv")
  ]


def test_readme_has_exactly_two_setup_commands():
  commands = _readme_commands()
  assert len(commands) == 2
  assert any("pytest" in c for c in commands) and any("spin_jax.train" in c for c in commands)


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / ".ci" / "run").read_text()
  test_cmd = next(c for c in _readme_commands() if "pytest" in c)
  assert test_cmd in ci
