"""Every fenced ```python and ```bash block of README.md runs as written, at a tiny scale.

The blocks run in the order of the file, in one scratch directory (holding links to the
repository's `gin_configs/` and `scripts/`), each in a fresh process: later blocks use what
earlier ones wrote (the quickstart's `runs/quickstart` is evaluated, reported and exported).
A block of docs/*.md runs too when the line above its fence is `<!-- snippet: run -->`: after
all of README.md's, files in name order (docs/USAGE.md's export-loading block loads what the
README's export command wrote).

A block that cannot run here says why on the line above its fence,
`<!-- snippet: skip: REASON -->`; it is reported as skipped with that reason (`pytest -rs`).
The fresh-machine block runs without its install commands (CI runs those itself).

Tiny scale, so that the whole file runs in a few minutes on a CPU:
* every `python -m adapt_tf.train` command gets `TINY_TRAIN` appended (gin applies the last
  binding of a parameter): 4 iterations of batch 8, cadences of 2;
* every `python -m adapt_tf.evaluate` command gets `TINY_EVALUATE` appended, and every
  `python -m adapt_tf.export` command `TINY_EXPORT`: no TFLite conversion, the slowest part of
  an export, which tests/test_export.py covers;
* Python blocks get the exact replacements of `TINY_PYTHON` (each must be found: a README
  change that drops one fails here instead of running at full size);
* the toy metric's classifier is trained on the small recipe of tests/test_toy_metric.py and
  stored under the default recipe's name in the snippets' own cache, so that no block spends
  a minute training it (test_toy_metric.py covers the real recipe).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && '
TINY_TRAIN = ["train.total_steps = 4", "train.d_batch_size = 8", "train.g_batch_size = 8",
              "train.log_every = 2", "train.checkpoint_every = 2", "train.sample_every = 2",
              "train.eval_num_samples = 128", "train.br_window = 4", "method.g_interval = 2",
              "method.d_interval = 2"]
TINY_EVALUATE = ["--num_samples=128"]
TINY_EXPORT = ["--notflite"]
TINY_PYTHON = {
    'steps, workdir = 300, "runs/library"': 'steps, workdir = 4, "runs/library"',
    'g_width=32, d_width=32': 'g_width=8, d_width=8',
    'g_interval=100, d_interval=100': 'g_interval=2, d_interval=2',
    'g_batch_size=32,': 'g_batch_size=8,',
    'br_window=100': 'br_window=4',
    'batch_size=2 * 32)': 'batch_size=2 * 8)',
    'every=50, total_steps=steps': 'every=2, total_steps=steps',
    'every=100, total_steps=steps': 'every=2, total_steps=steps',
}
RUN, SKIP = "<!-- snippet: run -->", re.compile(r"<!-- snippet: skip: (.+) -->")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence
    language: str
    text: str
    skip: str | None  # the reason, or None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}-{self.language}"


def blocks(path: Path, *, marked_only: bool = False) -> list[Block]:
    """The ```python / ```bash blocks of a Markdown file (only those marked to run, with
    `marked_only`), each with the skip reason of the line above its fence."""
    lines = path.read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = re.fullmatch(r"```(python|bash)", lines[index])
        if not fence:
            index += 1
            continue
        end = lines.index("```", index + 1)
        above = lines[index - 1] if index else ""
        skip = SKIP.fullmatch(above)
        if not marked_only or above == RUN:
            found.append(Block(str(path.relative_to(ROOT)), index + 1, fence.group(1),
                               "\n".join(lines[index + 1:end]) + "\n",
                               skip.group(1) if skip else None))
        index = end + 1
    return found


BLOCKS = blocks(ROOT / "README.md") + [
    block for doc in sorted((ROOT / "docs").glob("*.md")) for block in blocks(doc,
                                                                              marked_only=True)]


def tiny_bash(text: str) -> str:
    """`text` without the install commands and with the tiny flags appended to the train and
    evaluate commands (before a trailing comment)."""
    text = text.replace(INSTALL, "").replace("\\\n", " ")
    lines = []
    for line in text.splitlines():
        command, comment = re.match(r"(.*?)(\s+#\s.*)?$", line).groups()
        if re.search(r"python -m adapt_tf\.train\b", command):
            command += "".join(f' --gin_bindings="{binding}"' for binding in TINY_TRAIN)
        elif re.search(r"python -m adapt_tf\.evaluate\b", command):
            command += "".join(f" {flag}" for flag in TINY_EVALUATE)
        elif re.search(r"python -m adapt_tf\.export\b", command):
            command += "".join(f" {flag}" for flag in TINY_EXPORT)
        lines.append(command + (comment or ""))
    return "\n".join(lines) + "\n"


def tiny_python(text: str) -> str:
    for old, new in TINY_PYTHON.items():
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """(directory, environment) the blocks run in: links to gin_configs/ and scripts/, a
    cache holding the small toy classifier under the default recipe's name, and `python`
    first on PATH."""
    from adapt_tf.evaluation import toy_metric

    directory = tmp_path_factory.mktemp("readme")
    for name in ("gin_configs", "scripts"):
        (directory / name).symlink_to(ROOT / name)
    cache = directory / ".cache"
    small = toy_metric.Recipe(epochs=1, batch_size=48, num_train_examples=240)
    toy_metric.load_classifier(recipe=small, cache_dir=str(cache / "toy_classifier"))
    shutil.copy(toy_metric.classifier_path(recipe=small, cache_dir=str(cache / "toy_classifier")),
                toy_metric.classifier_path(cache_dir=str(cache / "toy_classifier")))
    env = {**os.environ, "ADAPT_TF_CACHE_DIR": str(cache), "CUDA_VISIBLE_DEVICES": "",
           "MPLBACKEND": "Agg",
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    return directory, env


def test_the_readme_has_blocks_to_run_and_each_skip_gives_a_reason():
    readme = [block for block in BLOCKS if block.path == "README.md"]
    assert sum(block.skip is None for block in readme) >= 3
    assert INSTALL in readme[0].text and readme[0].skip is None  # the quickstart runs
    assert all(block.skip.strip() for block in BLOCKS if block.skip is not None)
    library = next(block.text for block in BLOCKS if "SparseGAN(" in block.text)
    missing = [old for old in TINY_PYTHON if old not in library]
    assert not missing, f"the library example changed; update TINY_PYTHON: {missing}"


@pytest.mark.parametrize("block", BLOCKS, ids=[block.name for block in BLOCKS])
def test_block_runs(block, scratch):
    if block.skip is not None:
        pytest.skip(f"{block.name}: {block.skip}")
    directory, env = scratch
    if block.language == "bash":
        command = ["bash", "-e", "-o", "pipefail", "-c", tiny_bash(block.text)]
    else:
        script = directory / f"snippet_{block.line}.py"
        script.write_text(tiny_python(block.text))
        command = [sys.executable, str(script)]
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, (f"{block.name} failed:\n{command[-1]}\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
