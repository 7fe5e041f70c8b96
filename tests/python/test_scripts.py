"""The developer-facing shell: scripts, README and docs/cli.md agree with the tool that exists."""

import re
import subprocess

import pytest

SCRIPTS = ["scripts/setup", "scripts/build", "scripts/test", "scripts/demo", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(repo_root, script):
    path = repo_root / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_demo_refuses_a_missing_model_before_building(repo_root, tmp_path):
    missing = tmp_path / "none.onnx"
    result = subprocess.run([str(repo_root / "scripts" / "demo"), str(missing)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert str(missing) in result.stderr


def cli_commands(onnxq_cli):
    out = subprocess.run([str(onnxq_cli), "--help"], check=True, capture_output=True, text=True).stdout
    return set(re.findall(r"^  ([a-z][a-z-]*) ", out, re.MULTILINE))


def test_readme_lists_exactly_the_available_commands(repo_root, onnxq_cli):
    readme = (repo_root / "README.md").read_text()
    available = set()
    for line in readme.splitlines():
        if line.startswith("| `onnxq ") and "| available" in line:
            available.update(re.findall(r"`onnxq ([a-z][a-z-]*)", line.split("|")[1]))
    assert available == cli_commands(onnxq_cli)


def test_cli_doc_covers_every_command(repo_root, onnxq_cli):
    doc = (repo_root / "docs" / "cli.md").read_text()
    for name in cli_commands(onnxq_cli):
        assert f"## `onnxq {name}" in doc, f"docs/cli.md has no section for `onnxq {name}`"


def test_docs_links_resolve(repo_root):
    for page in [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
