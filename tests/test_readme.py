"""The README is a landing page whose example runs as printed."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_example_runs_and_prints_one_line_per_method(capsys):
    (example,) = re.findall(r"```python\n(.*?)```", README, re.S)
    exec(compile(example, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["lora", "hira", "abba"]
    errors = [float(line.split()[1]) for line in lines[:3]]
    assert errors[2] < errors[0]  # ABBA below LoRA on an orthogonal target at this budget
    assert lines[3].startswith("Bracket(")


def test_the_two_commands_exist_and_the_page_stays_short():
    for script in re.findall(r"^bash (scripts/\S+\.sh)", README, re.M):
        assert (ROOT / script).is_file(), script
    assert "bash scripts/reproduce.sh" in README and "bash scripts/test.sh" in README
    assert len(README.splitlines()) <= 150
