"""Sparse GANs on a 2-D ring of 8 Gaussians: Static, SDST and ADAPT side by side.

    python scripts/toy_mixture.py                  # 2000 iterations x 5 runs: ~3 min on 2 cores
    python scripts/toy_mixture.py --quick          # smoke run, 300 iterations x 2 runs: ~40 s
    python scripts/toy_mixture.py --steps 4000 --seed 1 --out runs/toy_mixture_s1

Masked-MLP G (8 -> 128 -> 128 -> 2) and D (2 -> 128 -> 128 -> 1), ReLU, hinge loss, Adam
(1e-3, beta_1 = 0.5), batch 256, one D step per iteration, are sparsified with ERK
(`topology.sparsify`, d_G = 0.2) and trained by `SparseGAN.fit` with the callbacks of the
`methods` presets (relaxed setting). The toy is far smaller than the paper's networks, so the
cadences are scaled down (ΔT_G = 100, ΔT_D = 250, a BR sample every 5 iterations in a
200-iteration window; see `Config`) to let ADAPT take several decisions in a short run.

Runs: Static-Balance (d_D = d_G), Static-Strong (dense D), SDST-Balance-RigL, ADAPT relaxed
with the paper's band [0.45, 0.55], and ADAPT relaxed with the band [0.05, 0.10]. The second
ADAPT run exists because BR here lives on another scale than in the paper's image GANs: the
runs that learn the ring settle at BR of about 0.02-0.08 whatever d_D is, so the paper's band
only ever says "D too strong" (see the printed table); [0.05, 0.10] brackets the BR the
healthy runs show.

Printed (a Markdown table per method): modes covered, share of high-quality samples (within
3σ of a mode centre), the BR window mean and d_D at quarters of the run, the median BR and the
share of BR readings inside the run's band over the second half; then the ADAPT decisions.
Written to --out: `toy_mixture.png` (samples per method, BR traces with the bands, d_D traces)
and `results.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from adapt_tf.runs import methods
from adapt_tf.sparse import topology
from adapt_tf.balance.controller import BAND as PAPER_BAND, ADAPTController
from adapt_tf.gan.sparse_gan import SparseGAN
from adapt_tf.sparse.layers import MaskedDense

import tensorflow as tf
import tf_keras as keras

MODES = 8
RADIUS = 2.0
SIGMA = 0.05
LATENT = 8
TOY_BAND = (0.05, 0.10)
# (label, preset name, extra `methods.method` arguments), all in the relaxed setting.
RUNS = (("Static-Balance", "static_balance", {}),
        ("Static-Strong", "static_strong", {}),
        ("SDST-Balance-RigL", "sdst_balance_rigl", {}),
        ("ADAPT (relaxed)", "adapt_relaxed", {}),
        ("ADAPT (relaxed, toy band)", "adapt_relaxed",
         dict(b_low=TOY_BAND[0], b_high=TOY_BAND[1])))


@dataclasses.dataclass(frozen=True)
class Config:
    """One toy experiment. Cadences are in iterations (one D step + one G step each)."""

    steps: int = 2000
    g_density: float = 0.2
    width: int = 128
    batch: int = 256
    learning_rate: float = 1e-3
    g_interval: int = 100  # ΔT_G of G-DST (paper: 500)
    d_interval: int = 250  # ΔT of ADAPT (paper: 1000)
    br_interval: int = 5  # paper: 10
    br_window: int = 200  # paper: 1000
    samples: int = 2500
    seed: int = 0


def ring_centres() -> np.ndarray:
    """[8, 2] float32 mode centres on a circle of radius 2."""
    angles = 2.0 * np.pi * np.arange(MODES) / MODES
    return RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def ring_dataset(config: Config) -> tf.data.Dataset:
    """Batches [batch, 2] float32 of the mixture, `config.steps` of them."""
    rng = np.random.default_rng(config.seed)
    n = config.steps * config.batch
    points = ring_centres()[rng.integers(0, MODES, n)] + SIGMA * rng.normal(size=(n, 2))
    return tf.data.Dataset.from_tensor_slices(points.astype(np.float32)).batch(
        config.batch, drop_remainder=True)


def mlp(inputs: int, outputs: int, *, width: int, prefix: str) -> keras.Model:
    """inputs -> width -> width -> outputs with ReLU; every kernel masked."""
    return keras.Sequential([
        keras.Input((inputs,)),
        MaskedDense(width, activation="relu", name=f"{prefix}1"),
        MaskedDense(width, activation="relu", name=f"{prefix}2"),
        MaskedDense(outputs, name=f"{prefix}3")], name=prefix)


def sample_quality(samples: np.ndarray) -> tuple[int, float]:
    """(modes covered, share of high-quality samples) of samples [N, 2].

    A sample is high quality if it lies within 3σ of its nearest mode centre; a mode is covered
    if at least 1 % of the samples are high-quality samples of it.
    """
    distances = np.linalg.norm(samples[:, None, :] - ring_centres()[None], axis=-1)
    nearest, close = distances.argmin(axis=1), distances.min(axis=1) <= 3.0 * SIGMA
    per_mode = np.bincount(nearest[close], minlength=MODES)
    return int(np.sum(per_mode >= 0.01 * len(samples))), float(close.mean())


class Trace(keras.callbacks.Callback):
    """Records the logged BR window mean and d_D after every `every` iterations."""

    def __init__(self, every: int):
        super().__init__()
        self.every = every
        self.steps, self.br, self.d_density = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        step = self.model.iteration
        if step % self.every == 0:
            self.steps.append(step)
            self.br.append(float(logs["br"]))
            self.d_density.append(float(logs["d_density"]))


def train_one(preset: str, config: Config, **method_kwargs) -> dict:
    """Trains one method on the ring; returns its samples, traces, band and decisions."""
    keras.utils.set_random_seed(config.seed)
    method = methods.method(preset, g_density=config.g_density, setting="relaxed",
                            g_interval=config.g_interval, d_interval=config.d_interval,
                            seed=config.seed, **method_kwargs)
    generator = mlp(LATENT, 2, width=config.width, prefix="g")
    discriminator = mlp(2, 1, width=config.width, prefix="d")
    for net, density in ((generator, method.g_density), (discriminator, method.d_density)):
        if density < 1.0:
            topology.sparsify(net, density, distribution="erk", seed=config.seed)
    gan = SparseGAN(generator, discriminator, latent_dim=LATENT, br_interval=config.br_interval,
                    br_window=config.br_window, seed=config.seed)
    gan.compile(g_optimizer=keras.optimizers.Adam(config.learning_rate, beta_1=0.5),
                d_optimizer=keras.optimizers.Adam(config.learning_rate, beta_1=0.5))
    trace = Trace(every=config.br_interval)
    callbacks = method.callbacks(total_steps=config.steps)
    start = time.time()
    gan.fit(ring_dataset(config), epochs=1, verbose=0, callbacks=callbacks + [trace])
    seconds = time.time() - start
    samples = gan.sample(config.samples, seed=config.seed + 1).numpy()
    modes, quality = sample_quality(samples)
    controller = next((c for c in callbacks if isinstance(c, ADAPTController)), None)
    band = PAPER_BAND if controller is None else (controller.b_low, controller.b_high)
    return dict(preset=preset, g_density=gan.density("generator"),
                d_density=gan.density("discriminator"), modes=modes, high_quality=quality,
                steps=trace.steps, br=trace.br, d_trace=trace.d_density, seconds=seconds,
                band=band, decisions=controller.decisions if controller else [],
                samples=samples.tolist())


def at_quarters(steps: list[int], values: list[float], total: int) -> list[float]:
    """The values recorded at (or just before) 1/4, 1/2, 3/4 and all of `total` iterations."""
    picked = []
    for quarter in (0.25, 0.5, 0.75, 1.0):
        index = int(np.searchsorted(steps, quarter * total, side="right")) - 1
        picked.append(values[max(index, 0)])
    return picked


def second_half(result: dict, total: int) -> np.ndarray:
    """The BR readings after iteration total / 2."""
    return np.array([br for step, br in zip(result["steps"], result["br"]) if step > total / 2])


def markdown_table(results: dict[str, dict], config: Config) -> str:
    """One row per run; BR statistics of the second half are against the run's own band."""
    rows = ["| method | d_G | d_D end | modes (of 8) | high quality | band | "
            "BR at 1/4, 1/2, 3/4, end | BR median, 2nd half | BR in band, 2nd half | "
            "d_D at 1/4, 1/2, 3/4, end | time |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        late, (low, high) = second_half(r, config.steps), r["band"]
        in_band = float(np.mean((late >= low) & (late <= high))) if late.size else float("nan")
        median = float(np.median(late)) if late.size else float("nan")
        brs = at_quarters(r["steps"], r["br"], config.steps)
        dds = at_quarters(r["steps"], r["d_trace"], config.steps)
        rows.append(
            f"| {label} | {r['g_density']:.3f} | {r['d_density']:.3f} | {r['modes']} | "
            f"{100 * r['high_quality']:.1f} % | [{low:.2f}, {high:.2f}] | "
            f"{', '.join(f'{b:.2f}' for b in brs)} | {median:.3f} | {100 * in_band:.0f} % | "
            f"{', '.join(f'{d:.2f}' for d in dds)} | {r['seconds']:.0f} s |")
    return "\n".join(rows)


def plot(results: dict[str, dict], config: Config, path: str) -> str:
    """Samples per method (top row); BR traces with the bands and d_D traces (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    figure = plt.figure(figsize=(3.6 * n, 7.6), constrained_layout=True)
    grid = figure.add_gridspec(2, 2 * n)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", "-.", ":", (0, (6, 2, 1, 2, 1, 2))]
    centres = ring_centres()
    for i, (label, r) in enumerate(results.items()):
        axis = figure.add_subplot(grid[0, 2 * i:2 * i + 2])
        samples = np.asarray(r["samples"])
        axis.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color=colors[i % len(colors)])
        axis.scatter(centres[:, 0], centres[:, 1], s=40, marker="x", color="black")
        axis.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal",
                 title=f"{label}\n{r['modes']}/8 modes, {100 * r['high_quality']:.0f} % HQ, "
                       f"d_D end {r['d_density']:.2f}")
    br_axis = figure.add_subplot(grid[1, :n])
    dd_axis = figure.add_subplot(grid[1, n:])
    bands = sorted({tuple(r["band"]) for r in results.values()})
    for band, color in zip(bands, ("tab:green", "tab:orange", "tab:gray")):
        br_axis.axhspan(*band, color=color, alpha=0.2, label=f"band [{band[0]}, {band[1]}]")
    for i, (label, r) in enumerate(results.items()):
        style = dict(color=colors[i % len(colors)], ls=styles[i % len(styles)], label=label)
        br_axis.plot(r["steps"], r["br"], lw=1.1, **style)
        dd_axis.plot(r["steps"], r["d_trace"], lw=1.8, **style)
    br_axis.set(xlabel="iteration", ylabel="BR (window mean)", ylim=(-0.3, 0.7),
                title=f"balance ratio, mean over a {config.br_window}-iteration window "
                      "(axis clipped to [-0.3, 0.7])")
    dd_axis.set(xlabel="iteration", ylabel="d_D", ylim=(0, 1.05),
                title=f"discriminator density (ADAPT acts every {config.d_interval} it.)")
    br_axis.legend(fontsize=7, loc="upper left", ncol=2)
    dd_axis.legend(fontsize=7, loc="center right")
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="iterations per method (default 2000; 300 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/toy_mixture")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: Static-Balance and ADAPT only, 300 iterations, "
                             "ΔT_G = ΔT_D = 50, a 50-iteration BR window")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 20:
        parser.error(f"--steps={args.steps}: use at least 20 iterations.")
    if args.quick:
        config = Config(steps=args.steps or 300, g_interval=50, d_interval=50, br_window=50,
                        samples=1000, seed=args.seed)
        runs = (RUNS[0], RUNS[3])
    else:
        config = Config(steps=args.steps or Config.steps, seed=args.seed)
        runs = RUNS
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    print(f"{config}\nload average at start: {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    for label, preset, kwargs in runs:
        results[label] = train_one(preset, config, **kwargs)
        print(f"{label}: {results[label]['seconds']:.0f} s", flush=True)
    print()
    print(markdown_table(results, config))
    print()
    for label, r in results.items():
        for d in r["decisions"]:
            br = "n/a" if d["br"] is None else f"{d['br']:.3f}"
            print(f"{label}, step {d['step']}: BR {br}, d_D {d['old_density']:.5f} -> "
                  f"{d['new_density']:.5f} ({d['action']})")
    figure = plot(results, config, os.path.join(args.out, "toy_mixture.png"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"config": dataclasses.asdict(config), "results": results}, f)
    print(f"\nwrote {figure}; total {time.time() - start:.0f} s, load average at end: "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
