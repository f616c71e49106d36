"""README's set-up commands: what CI runs, and what works on a stock Debian/Ubuntu system Python."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> dict[str, str]:
    """README's first code block: each command under its comment, by the comment's first words."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None
    commands, comment = {}, ""
    for line in block.group(1).splitlines():
        if line.startswith("#"):
            comment = line
        elif line.strip():
            commands[comment] = line
    return commands


def test_ci_runs_readmes_test_command_word_for_word() -> None:
    [test_command] = [c for comment, c in readme_commands().items() if comment.startswith("# Run the tests")]
    ci_lines = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in ci_lines if line.startswith(test_command)], test_command


def test_readme_commands_use_a_venv() -> None:
    # A system Python under PEP 668 refuses `pip install` outside a venv: every pip and every command run
    # after it must be the venv's.
    commands = readme_commands()
    assert len(commands) == 2
    for command in commands.values():
        steps = command.split(" && ")
        assert steps[0] == "python3 -m venv .venv"
        assert all(step.startswith(".venv/bin/") for step in steps[1:]), command


def test_readme_names_the_distribution_not_the_unrelated_pypi_pounce() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert not re.findall(r"\bpounce\[", text)  # `pounce[h2]` would install PyPI's `pounce`
