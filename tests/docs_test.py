"""The README and docs/ tell the truth: their shell blocks run as pasted
(every command parses against its program's flags and the config schema,
no comment cuts a continued line, examples write outside tracked files,
one spelling of the interpreter), their Python blocks import what exists
(the cheap ones run), links resolve, and the quoted seed-0 numbers are the
committed evaluation's."""

import ast
import importlib
import importlib.util
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from betatc_jax import config as config_lib



ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INTERPRETER = ".venv/bin/python"


def fenced_blocks(page: pathlib.Path) -> list[tuple[str, str]]:
  """(language, text) of every fenced block of ``page`` ('' if untagged)."""
  found, language, lines = [], None, []
  for line in page.read_text().splitlines():
    if line.startswith("```"):
      if language is None:
        language, lines = line[3:].strip(), []
      else:
        found.append((language, "\n".join(lines) + "\n"))
        language = None
    elif language is not None:
      lines.append(line)
  assert language is None, f"{page.name}: an unclosed code block"
  return found


def blocks(page: pathlib.Path, language: str) -> list[str]:
  """The fenced blocks of ``page`` in ``language``."""
  return [text for lang, text in fenced_blocks(page) if lang == language]


# ------------------------------------------------------------------ shell blocks

def logical_lines(block: str) -> list[str]:
  """The block's commands with continuations joined.

  Raises:
    AssertionError: a comment inside a continued command (bash would end
      the command there and run the rest as separate commands).
  """
  lines, current = [], ""
  for number, line in enumerate(block.splitlines(), 1):
    continued = line.rstrip().endswith("\\")
    body = line.rstrip()[:-1] if continued else line
    if current and _has_comment(body):
      raise AssertionError(f"line {number}: a comment inside a continued command: {line!r}")
    if continued and _has_comment(body):
      raise AssertionError(f"line {number}: a comment before a line continuation: {line!r}")
    current += body + " "
    if not continued:
      if current.strip():
        lines.append(current.strip())
      current = ""
  assert not current, "the block ends inside a continued command"
  return lines


def _has_comment(text: str) -> bool:
  """Whether ``text`` holds an unquoted ``#`` comment."""
  def words(commenters):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, commenters
    return list(lexer)
  try:
    return words("#") != words("")
  except ValueError:          # an open quote: the quoted part continues on the next line
    return False


def commands(line: str) -> list[list[str]]:
  """The simple commands of one logical line (split at ;, &&, ||, | and &),
  with leading VAR=value assignments and shell keywords dropped; commands in
  a quoted ``bash -c`` / ``--command`` argument are included."""
  # Shell expansions as plausible values: $(...) a host name, $VAR a number.
  line = re.sub(r"\$\([^)]*\)", "host", line)
  line = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", line)
  lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  out, current = [], []
  for token in lexer:
    if token in (";", "&&", "||", "|", "&", ";;"):
      out.append(current)
      current = []
    else:
      current.append(token)
  out.append(current)
  result = []
  for words in out:
    while words and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]) or
                     words[0] in ("do", "then", "else", "time")):
      words = words[1:]
    if not words or words[0] in ("done", "fi", "wait"):
      continue
    if words[0] == "for":
      continue                       # `for p in 0 1`: its body is the next command
    result.append(words)
    for i, word in enumerate(words[:-1]):       # srun ... bash -c '...', gcloud ... --command '...'
      if word in ("-c", "--command"):
        result += [c for l in logical_lines(words[i + 1]) for c in commands(l)]
  return result


def all_shell_commands() -> list[tuple[str, list[str]]]:
  found = []
  for page in PAGES:
    for block in blocks(page, "bash") + blocks(page, "sh"):
      for line in logical_lines(block):
        found += [(page.name, words) for words in commands(line)]
  return found


def test_no_untagged_code_blocks():
  """Every fenced block names its language, so the checks below see it."""
  untagged = [page.name for page in PAGES for language, block in fenced_blocks(page)
              if not language and not block.lstrip().startswith("train.py ")]   # a file tree
  assert not untagged, untagged


def test_a_comment_in_a_continued_command_is_caught():
  with pytest.raises(AssertionError, match="comment inside a continued command"):
    logical_lines("python train.py \\\n  --config.a=1   # why\n  --config.b=2\n")
  lines = logical_lines("python a.py \\\n  --x 1   \\\n  --y '#2'\n# a comment\n")
  assert [l.split() for l in lines] == [["python", "a.py", "--x", "1", "--y", "'#2'"],
                                        ["#", "a", "comment"]]


# The flags of each command line besides its config (name -> takes a value).
COMMAND_FLAGS = {"train.py": {"workdir": True, "allow_config_change": False, "reevaluate": False},
                 "betatc_jax.sweep": {},
                 "betatc_jax.import_torch": {"checkpoint": True, "workdir": True},
                 "betatc_jax.evaluate": {"workdir": True, "no_progress": False}}


def parse_command(program: str, args: list[str], default_config: str | None = None):
  """``args`` parsed as ``program`` parses them (absl flags, and
  ml_collections' ``--config FILE --config.a.b=v``): the resolved config, or
  None for a command without one. A bad flag, key or value raises."""
  from absl import flags
  from ml_collections import config_flags
  values = flags.FlagValues()
  for name, takes_value in COMMAND_FLAGS[program].items():
    (flags.DEFINE_string if takes_value else flags.DEFINE_bool)(name, None, "", flag_values=values)
  has_config = program != "betatc_jax.evaluate"
  if has_config:
    config_flags.DEFINE_config_file("config", default_config, "", flag_values=values,
                                    lock_config=True, sys_argv=["prog", *args])
  values(["prog", *args])
  if not has_config:
    return None
  config = values.config
  assert isinstance(config, ml_collections.ConfigDict), \
      f"config file {config_flags.get_config_filename(values['config'])} does not load"
  return config


def check_command(program: str, args: list[str]) -> None:
  """The command's flags parse and its config validates."""
  if program == "betatc_jax.sweep":
    from betatc_jax.sweep import grid
    default = str(ROOT / "betatc_jax" / "sweep" / "default_config.py")
    grid.validate(parse_command(program, args, default))
  elif program == "betatc_jax.evaluate":
    parse_command(program, args)
    assert any(a.startswith("--workdir") for a in args), args
  else:
    config_lib.validate_config(parse_command(program, args))


def outputs_are_untracked(args: list[str]) -> None:
  """--workdir and a sweep's --config.root and --config.out name folders
  outside the repository's tracked files (absolute paths and workdirs/,
  which git ignores, are)."""
  for i, arg in enumerate(args):
    name, _, value = arg.partition("=")
    if name not in ("--workdir", "--config.root", "--config.out"):
      continue
    value = value or args[i + 1]
    if value.startswith(("/", "workdirs/")):
      continue
    if (ROOT / ".git").exists():
      tracked = subprocess.run(["git", "ls-files", "--", value], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split()
      assert not tracked, f"{arg} writes over tracked files ({tracked[0]}, ...)"
    else:
      assert not (ROOT / value).exists(), f"{arg} writes into the repository's {value}"


def check_python_command(args: list[str]) -> None:
  if args[:2] == ["-m", "venv"] or args[:2] == ["-m", "pytest"]:
    return
  outputs_are_untracked(args)
  if args[0] == "train.py":
    check_command("train.py", args[1:])
  elif args[0] == "scripts/sweep.py":
    check_command("betatc_jax.sweep", args[1:])
  elif args[0] == "-m" and args[1] in COMMAND_FLAGS:
    check_command(args[1], args[2:])
  elif args[0].endswith(".py"):
    assert (ROOT / args[0]).is_file(), f"no script {args[0]}"
  elif args[0] == "-m":
    assert importlib.util.find_spec(args[1]) is not None, f"no module {args[1]}"
  else:
    raise AssertionError(f"unchecked python command {args}")


KNOWN_PROGRAMS = ("bash", "srun", "gcloud", "python3", "pip")


@pytest.mark.parametrize("page,words", all_shell_commands(),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v)[:60])
def test_every_shell_command_in_the_docs_parses(page, words):
  program, args = words[0], words[1:]
  assert program != "python", f"{page}: say {INTERPRETER}, as the README does: {words}"
  if program == INTERPRETER:
    check_python_command(args)
  elif program == "bash":
    assert (ROOT / args[0]).is_file(), f"{page}: no script {args[0]}"
  elif program == "python3":
    assert args[:2] == ["-m", "venv"], f"{page}: {words}"
  else:
    assert program in KNOWN_PROGRAMS or program.startswith(".venv/bin/"), f"{page}: {words}"


# ------------------------------------------------------------------ Python blocks

def python_blocks() -> list[tuple[str, str]]:
  return [(page.name, block) for page in PAGES for block in blocks(page, "python")]


@pytest.mark.parametrize("page,block", python_blocks(), ids=lambda v: v if len(v) < 40 else None)
def test_python_blocks_use_what_exists(page, block):
  """Every ``from betatc_jax import m`` names a module, every ``m.name`` it
  uses exists, every keyword passed to it is a parameter, and nothing
  imports ``configs`` (not installed: it fails in a saved script)."""
  tree = ast.parse(block)
  modules = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      assert node.module != "configs" and not (node.module or "").startswith("configs."), \
          f"{page}: `configs` is not a package a script can import"
      if node.module == "betatc_jax":
        for alias in node.names:
          modules[alias.asname or alias.name] = importlib.import_module(f"betatc_jax.{alias.name}")
  import inspect
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
        node.value.id in modules:
      assert hasattr(modules[node.value.id], node.attr), \
          f"{page}: betatc_jax.{node.value.id} has no {node.attr}"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
        isinstance(node.func.value, ast.Name) and node.func.value.id in modules:
      function = getattr(modules[node.func.value.id], node.func.attr)
      keywords = {k.arg for k in node.keywords if k.arg}
      try:
        parameters = inspect.signature(function).parameters
      except (TypeError, ValueError):
        continue
      if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        assert keywords <= set(parameters), \
            f"{page}: {node.func.value.id}.{node.func.attr} takes no {keywords - set(parameters)}"


def test_readme_loss_snippet_runs_as_pasted():
  block = next(b for b in blocks(ROOT / "README.md", "python") if "betatc_objective" in b)
  namespace = {}
  exec(compile(block, "README.md", "exec"), namespace)
  loss, metrics = namespace["loss"], namespace["metrics"]
  assert np.isfinite(float(loss)) and {"recon", "mi", "tc", "dim_kl", "kl"} <= set(metrics)
  assert jax.tree.structure(namespace["grads"]) == jax.tree.structure(namespace["params"])


@pytest.mark.slow
def test_population_snippet_runs_as_a_saved_script(tmp_path):
  """docs/populations.md's snippet, saved as a script and run from another
  folder, at a small size (its default config swapped for the tests'
  small one): it trains, exports and evaluates its eight members."""
  block = next(b for b in blocks(ROOT / "docs" / "populations.md", "python")
               if "train_population" in b)
  script = tmp_path / "population_example.py"
  script.write_text(block)
  shrink = textwrap_dedent(f"""
      import runpy, sys
      sys.path[:0] = [{str(ROOT / 'tests')!r}, {str(ROOT)!r}]
      from betatc_jax import default_config
      import train_test
      default_config.get_config = lambda: train_test.small_config(num_train_steps=4)
      runpy.run_path({str(script)!r}, run_name="__main__")
      """)
  env = dict(os.environ, PYTHONPATH="")
  result = subprocess.run([sys.executable, "-c", shrink], cwd=tmp_path, capture_output=True,
                          text=True, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  members = sorted(p.name for p in (tmp_path / "workdirs" / "pop" / "members").iterdir())
  assert len(members) == 8
  for name in members:
    run = tmp_path / "workdirs" / "pop" / "members" / name
    assert (run / "checkpoints" / "4").is_dir() and (run / "eval.json").is_file()
  assert "mig" in result.stdout                   # it prints what it found


def textwrap_dedent(text: str) -> str:
  import textwrap
  return textwrap.dedent(text)


# ------------------------------------------------------------------ links and numbers

def test_relative_links_in_the_docs_resolve():
  """Every relative link of README.md and docs/*.md names a file or folder."""
  broken = []
  for page in PAGES:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
      if "://" in target or target.startswith("mailto:"):
        continue
      if not (page.parent / target).exists():
        broken.append(f"{page.name}: {target}")
  assert not broken, broken


def test_the_readme_quotes_the_committed_evaluation_of_seed_0():
  """The quickstart's numbers are those of results/cpu_default/eval_default_seed0.json."""
  result = json.loads((ROOT / "results" / "cpu_default" / "eval_default_seed0.json").read_text())
  quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
  quoted = {
      "MIG": (r"MIG (\d\.\d+)\*\*", result["mig"]),
      "pos_x": (r"pos_x (\d\.\d+)", result["mig_per_factor"]["pos_x"]),
      "pos_y": (r"pos_y (\d\.\d+)", result["mig_per_factor"]["pos_y"]),
      "scale": (r"scale (\d\.\d+)", result["mig_per_factor"]["scale"]),
      "TC": (r"TC (\d\.\d+)", result["tc"]),
      "log p": (r"log p\(x\|z\) [−-](\d+)", -result["log_px"]),
      "KL": (r"KL (\d+\.\d+) nats", result["kl"]),
      "active": (r"(\d+) active latents", result["active_latents"]),
  }
  for name, (pattern, value) in quoted.items():
    match = re.search(pattern, quickstart)
    assert match, f"the quickstart does not quote {name}"
    text = match[1]
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert float(text) == round(value, decimals), f"{name}: README {text}, eval.json {value}"
  config_doc = " ".join((ROOT / "configs" / "default.py").read_text().split())
  assert f"(seed 0) gave {result['mig']:.3f}" in config_doc


def test_the_readme_layout_block_matches_the_tree():
  """Every path the README's layout names exists, and every module and
  subpackage of betatc_jax/ is named there."""
  readme = (ROOT / "README.md").read_text()
  layout = next(text for language, text in fenced_blocks(ROOT / "README.md")
                if not language and text.lstrip().startswith("train.py"))
  named = [line.split()[0] for line in layout.splitlines() if line.strip()]
  missing = [path for path in named if not (ROOT / path).exists()]
  assert not missing, missing
  package = {f"betatc_jax/{p.name}" + ("/" if p.is_dir() else "")
             for p in (ROOT / "betatc_jax").iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or
             (p.is_dir() and (p / "__init__.py").exists())}
  assert package <= set(named), sorted(package - set(named))
  assert "## Layout" in readme


CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_states_a_command_that_parses(path):
  """Each config's docstring has a ``Command`` with the command that runs it
  (continued lines joined), and that command parses and validates."""
  doc = ast.get_docstring(ast.parse(path.read_text()))
  lines = doc.split("Command", 1)[1].splitlines()[1:]
  command, line = "", lines.pop(0).strip()
  while True:
    command += line.rstrip("\\\\ ") + " "
    if not line.endswith("\\\\"):
      break
    line = lines.pop(0).strip()
  words = shlex.split(command)
  assert words[0] == INTERPRETER and f"configs/{path.name}" in words, command
  check_python_command(words[1:])
