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

from adapt_tf.paper import DENSITIES, PAPER_FID, SETTINGS

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "gin_configs" / "experiments"
# cell name -> (sparsity files, table, description)
CELLS = {
    "dense": (["dense"], "Tables 1-2, dense baseline", "dense G and D"),
    "static_balance": (["static_balance"], "Tables 1-2, Static-Balance", "fixed masks, d_D = d_G"),
    "static_strong": (["static_strong"], "Table 1, Static-Strong", "fixed masks, dense D"),
    "sdst_balance_set": (["sdst_balance_set"], "Tables 1-2, SDST-Balance-SET", ""),
    "sdst_strong_set": (["sdst_strong_set"], "Table 1, SDST-Strong-SET", "dense D"),
    "sdst_balance_rigl": (["sdst_balance_rigl"], "Tables 1-2, SDST-Balance-RigL", ""),
    "sdst_strong_rigl": (["sdst_strong_rigl"], "Table 1, SDST-Strong-RigL", "dense D"),
    "adapt_relaxed": (["adapt_relaxed"], "Table 1, ADAPT_relax", ""),
    "static_strong_strict": (["static_strong", "strict"], "Table 2, Static-Strong", "D at 50 %"),
    "sdst_strong_set_strict": (["sdst_strong_set", "strict"], "Table 2, SDST-Strong-SET",
                               "D at 50 %"),
    "sdst_strong_rigl_strict": (["sdst_strong_rigl", "strict"], "Table 2, SDST-Strong-RigL",
                                "D at 50 %"),
    "adapt_strict": (["adapt_strict"], "Table 2, ADAPT_strict", "d_max = 50 %"),
}


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
