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


def test_no_private_jax_api_and_modules_a_reader_can_hold():
  """No ``jax._src`` import; no module of the package over ~400 lines (410)
  and no function body (its docstring aside) over 60."""
  import ast
  too_long = []
  for path in sorted((ROOT / "betatc_jax").rglob("*.py")):
    text = path.read_text()
    assert "jax._src" not in text, path
    if text.count("\n") > 410:
      too_long.append(f"{path.name}: {text.count(chr(10))} lines")
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        body = node.body
        docstring = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                     and len(body) > 1)
        length = node.end_lineno - (body[1] if docstring else body[0]).lineno + 1
        if length > 60:
          too_long.append(f"{path.name}: {node.name} {length} lines")
  assert not too_long, too_long


DEPRECATIONS = """
import pathlib, sys, tempfile, warnings
sys.path[:0] = [{tests!r}, {root!r}]
for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
  warnings.filterwarnings("error", category=category,
                          module=r"(betatc_jax|jax|jaxlib|flax|orbax|optax|chex)(\\.|$)")
from betatc_jax import evaluate, population, run
from betatc_jax.members import Member
from train_test import small_config
work = pathlib.Path(tempfile.mkdtemp())
run.train_and_evaluate(small_config(num_train_steps=4, **{{"eval.at_end": True}}), str(work / "run"))
pair = [Member("a", {{"seed": 0}}), Member("b", {{"seed": 1}})]
for mode in ("vmap", "sequential"):
  population.train_population(small_config(num_train_steps=4), pair, work / mode, execution=mode,
                              on_non_finite="freeze")
evaluate.evaluate_workdir(work / "run")
print("CLEAN")
"""


def test_no_deprecated_jax_flax_or_orbax_call():
  """A short train with its evaluation, a vmapped and a sequential
  population, and an evaluation, with every deprecation warning that JAX,
  flax, Orbax, optax or chex raise (or that this package's own calls
  trigger) turned into an error."""
  import children
  code = DEPRECATIONS.format(tests=str(ROOT / "tests"), root=str(ROOT))
  result = children.run([sys.executable, "-c", code], cwd=ROOT)
  assert result.returncode == 0 and "CLEAN" in result.stdout, result.stderr[-3000:]
