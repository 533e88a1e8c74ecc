"""The paper's grid (Tables 1-2): writes the experiment configs, prints or runs the commands.

    python scripts/paper_grid.py --write-configs      # (re)writes gin_configs/experiments/
    python scripts/paper_grid.py                      # prints every command of the grid
    python scripts/paper_grid.py --run --only sngan_cifar10/adapt_relaxed --densities 0.1

Each cell is `gin_configs/experiments/<setting>/<method>.gin` at DENSITY = d_G in
{0.1, 0.2, 0.3, 0.5}; workdirs are runs/<setting>/<method>/d<percent>.
"""
from __future__ import annotations

import argparse
import pathlib
import shlex
import subprocess
import sys

from adapt_tf.runs.methods import PRESETS
from adapt_tf.runs.paper import DENSITIES, PAPER_FID, SETTINGS, cell_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "gin_configs" / "experiments"


def _cells() -> dict[str, tuple[list[str], str, str]]:
    """Cell -> (sparsity files, table, description), from `methods.PRESETS`: each preset in
    the grid, and for a Strong-D baseline its strict cell (Table 2, D at 50 %)."""
    cells = {}
    for name, preset in PRESETS.items():
        if preset.grid is None:
            continue
        cells[name] = ([name], *preset.grid)
        strict = cell_name(name, "strict")
        if strict != name:
            cells[strict] = ([name, "strict"], f"Table 2, {preset.label}", "D at 50 %")
    return cells


CELLS = _cells()


def config_path(setting: str, cell: str) -> pathlib.Path:
    return EXPERIMENTS / setting / f"{cell}.gin"


def command(setting: str, cell: str, density: float) -> list[str]:
    workdir = f"runs/{setting}/{cell}/d{round(density * 100)}"
    args = ["python", "-m", "adapt_tf.train",
            f"--gin_file={config_path(setting, cell).relative_to(ROOT)}",
            f"--workdir={workdir}"]
    if cell != "dense":
        args.append(f"--gin_bindings=DENSITY = {density}")
    return args


def write_configs() -> None:
    for setting, title in SETTINGS.items():
        (EXPERIMENTS / setting).mkdir(parents=True, exist_ok=True)
        for cell, (sparsity, table, note) in CELLS.items():
            fids = PAPER_FID.get((setting, cell), {})
            paper = ", ".join(f"{'dense' if d == 1.0 else f'{round(d * 100)}%'}: {v}"
                              for d, v in fids.items()) or "not in our notes; see the paper"
            densities = "" if cell == "dense" else " d_G = DENSITY (default 0.1)."
            cmd = " ".join(shlex.quote(a) for a in command(setting, cell, 0.1)[1:])
            lines = [f"# {title}: {table}{' (' + note + ')' if note else ''}.{densities}",
                     f"# Paper FID: {paper}.",
                     f"# Command: python {cmd}",
                     f"include 'settings/{setting}.gin'"]
            lines += [f"include 'sparsity/{name}.gin'" for name in sparsity]
            config_path(setting, cell).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-configs", action="store_true")
    parser.add_argument("--run", action="store_true", help="run the commands one by one")
    parser.add_argument("--only", action="append", default=[],
                        help="setting/cell (repeatable); default: the whole grid")
    parser.add_argument("--densities", type=float, nargs="+", default=list(DENSITIES))
    args = parser.parse_args()
    if args.write_configs:
        write_configs()
        return
    known = {f"{s}/{c}" for s in SETTINGS for c in CELLS}
    unknown = sorted(set(args.only) - known)
    if unknown:
        parser.error(f"unknown cells {unknown}; choose from {sorted(known)}")
    for key in args.only or sorted(known):
        setting, cell = key.split("/")
        for density in ([1.0] if cell == "dense" else args.densities):
            cmd = command(setting, cell, density)
            print(" ".join(shlex.quote(a) for a in cmd))
            if args.run:
                subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
