"""The README's commands, CI and the import boundary of the loss."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bash_lines(text: str) -> list[str]:
  lines, inside = [], False
  for line in text.splitlines():
    if line.startswith("```"):
      inside = line.strip() == "```bash"
      continue
    if inside:
      lines.append(line.strip())
  return lines


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / "README.md").read_text()
  quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
  commands = _bash_lines(quickstart)
  assert len(commands) == 2, commands  # exactly two: train, test
  assert "train.py --config configs/default.py" in commands[0]
  test_commands = [c for c in commands if "pytest" in c]
  assert len(test_commands) == 1, commands
  ci_lines = [l.strip() for l in (ROOT / ".ci/run").read_text().splitlines()
              if l.strip() and not l.startswith("#")]
  assert test_commands[0] in ci_lines


def test_loss_imports_nothing_from_models_data_or_trainer():
  code = ("import sys, betatc_jax.losses, betatc_jax.estimators; "
          "bad = [m for m in sys.modules if m.startswith('betatc_jax.') and "
          "m not in ('betatc_jax.losses', 'betatc_jax.estimators', 'betatc_jax.checks')]; "
          "bad += [m for m in ('flax', 'optax', 'orbax', 'torch') if m in sys.modules]; "
          "print(bad); sys.exit(1 if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


def test_a_failed_tests_folder_keeps_its_logs_and_loses_its_large_files(tmp_path):
  """conftest's pruning: files over 1 MB go (listed), small ones stay."""
  import conftest
  (tmp_path / "run" / "checkpoints" / "4").mkdir(parents=True)
  big = tmp_path / "run" / "checkpoints" / "4" / "params"
  big.write_bytes(b"\0" * (conftest.KEEP_BYTES + 1))
  (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 4}\n')
  conftest.prune_large_files(tmp_path)
  assert not big.exists() and (tmp_path / "run" / "metrics.jsonl").is_file()
  assert str(big) in (tmp_path / "PRUNED.txt").read_text()
