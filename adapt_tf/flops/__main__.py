"""`python -m adapt_tf.flops --gin_file=F [--gin_bindings=B] [--convention=paper]`.

Prints, without training, the training FLOPs of the setting that F describes (e.g.
`gin_configs/settings/sngan_cifar10.gin` or any experiment file): the dense total, and the
total and normalised training FLOPs (ratio to dense) of the Static-Balance (d_D = d_G) and
Static-Strong (dense D; 50 % in the strict setting) configurations for d_G in
{10, 20, 30, 50} %, with masks at the ERK (or the config's `train.sparse_init`) layer
densities, the setting's batch sizes, n_dis and iterations. Under the default "paper"
convention the numbers are MACs counted as the official code counts them (docs/ALGORITHM.md §10),
comparable with the paper's Table 3. Only the model shapes matter: nothing is trained or read.
"""
from __future__ import annotations

if __name__ == "__main__":  # before TensorFlow loads: its C++ log lines need --verbose
    from adapt_tf import cli

    cli.quiet_tensorflow()

import dataclasses
import sys
from typing import Any, Sequence

from absl import app, flags

import adapt_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from adapt_tf import flops
from adapt_tf.runs import paper

__all__ = ["StaticFlops", "static_flops", "format_table", "define_flags", "main", "run"]


@dataclasses.dataclass(frozen=True)
class StaticFlops:
    """Training FLOPs of a setting's static configurations.

    Attributes:
      title: what was counted (architecture, dataset, iterations, batches, convention).
      dense_total: training FLOPs of the dense run.
      rows: {"configuration", "g_density", "d_density", "flops", "ratio"} per configuration.
    """

    title: str
    dense_total: float
    rows: list[dict[str, Any]]


def static_flops(arguments: dict[str, Any], *, strict: bool = False,
                 convention: str = "paper",
                 densities: Sequence[float] = paper.DENSITIES) -> StaticFlops:
    """Static-Balance and Static-Strong training FLOPs of the run `arguments` describe.

    Args:
      arguments: `train_lib.RunSpec` fields (`records.ParsedConfig.arguments`): reads
        architecture, image_size (if present), dataset, g_width, d_width, d_batch_size,
        g_batch_size, n_dis, total_steps, br_interval and sparse_init.
      strict: the strict setting (Strong D at 50 %) instead of the relaxed one (dense D).
      convention: "paper", "exact" or "exact_sparse".
      densities: d_G values in (0, 1].
    """
    from adapt_tf.gan import architectures
    from adapt_tf.runs import methods
    from adapt_tf.sparse import topology

    name = architectures.architecture(arguments["architecture"],
                                      image_size=arguments.get("image_size")).name
    (g_costs, d_costs), shapes = _costs_and_shapes(arguments)
    distributions = {"erk": topology.erk_densities, "uniform": topology.uniform_densities}
    if arguments["sparse_init"] not in distributions:
        raise ValueError(f"sparse_init={arguments['sparse_init']!r}: choose one of "
                         f"{sorted(distributions)}.")
    distribute = distributions[arguments["sparse_init"]]
    setting = "strict" if strict else "relaxed"
    configurations = {}
    for d_g in densities:
        for method in ("static_balance", "static_strong"):
            d_d = methods.method(method, g_density=d_g, setting=setting).d_density
            configurations[(paper.CELLS[method], d_g, d_d)] = (distribute(shapes[0], d_g),
                                                               distribute(shapes[1], d_d))
    schedule = flops.Schedule(d_batch=arguments["d_batch_size"],
                              g_batch=arguments["g_batch_size"], n_dis=arguments["n_dis"],
                              br_interval=arguments["br_interval"])
    table = flops.flops_table(g_costs, d_costs, schedule,
                              {f"{label} d_G={d_g} d_D={d_d}": value
                               for (label, d_g, d_d), value in configurations.items()},
                              iterations=arguments["total_steps"], convention=convention)
    rows = [{"configuration": label, "g_density": d_g, "d_density": d_d,
             "flops": row["flops"], "ratio": row["ratio"]}
            for (label, d_g, d_d), row in zip(configurations, table)]
    title = (f"{name} on {arguments['dataset']} ({setting} setting): "
             f"{arguments['total_steps']} iterations, n_dis {arguments['n_dis']}, batch D "
             f"{arguments['d_batch_size']} / G {arguments['g_batch_size']}, "
             f"{arguments['sparse_init'].upper()} masks, convention {convention!r}")
    return StaticFlops(title, table[0]["dense_flops"], rows)


def _costs_and_shapes(arguments: dict[str, Any]) -> tuple[tuple[list, list], list[dict]]:
    """((G costs, D costs), [G, D] {masked layer: kernel shape}) of the run's architecture."""
    from adapt_tf.gan import architectures
    from adapt_tf import data
    from adapt_tf.flops import flops_logger
    from adapt_tf.sparse.layers import masked_layers

    # The run's family member at its train.image_size (absent from runs made before it).
    arch = architectures.architecture(arguments["architecture"],
                                      image_size=arguments.get("image_size"))
    num_classes = data.dataset_info(arguments["dataset"]).num_classes if arch.conditional \
        else None
    generator, discriminator = architectures.build_models(
        arch.name, num_classes=num_classes, g_width=arguments["g_width"],
        d_width=arguments["d_width"])
    costs = flops_logger.network_costs(generator, discriminator, latent_dim=arch.latent_dim,
                                       num_classes=num_classes)
    shapes = [{layer.name: tuple(layer.kernel.shape) for layer in masked_layers(model)}
              for model in (generator, discriminator)]
    return costs, shapes


def format_table(result: StaticFlops) -> str:
    """The result as text: a title, the dense total and a Markdown table."""
    lines = [result.title, f"Dense training FLOPs: {result.dense_total:.4e}", "",
             "| configuration | d_G | d_D | training FLOPs | normalised |",
             "|---|---:|---:|---:|---:|"]
    for row in result.rows:
        lines.append(f"| {row['configuration']} | {row['g_density']:.0%} | "
                     f"{row['d_density']:.0%} | {row['flops']:.4e} | {row['ratio']:.2%} |")
    return "\n".join(lines)


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a program; see `adapt_tf.evaluate`)."""
    flags.DEFINE_multi_string("gin_file", [], "Gin config file(s), applied in order.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.n_dis = 4'.")
    flags.DEFINE_enum("convention", "paper", sorted(flops.CONVENTIONS),
                      "FLOPs convention (see adapt_tf.flops).")
    flags.DEFINE_list("densities", [str(d) for d in paper.DENSITIES],
                      "Generator densities d_G, comma-separated, in (0, 1].")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    if not values.gin_file:
        raise app.UsageError("Give at least one --gin_file (e.g. "
                             "gin_configs/settings/sngan_cifar10.gin).")
    try:
        densities = [float(d) for d in values.densities]
    except ValueError as error:
        raise app.UsageError(f"--densities must be numbers in (0, 1]: {error}")
    from adapt_tf.runs import configurables

    try:
        config = configurables.parse_run_config(values.gin_file, values.gin_bindings,
                                                with_method=False)
    except (ValueError, KeyError, TypeError, SyntaxError) as error:
        sys.exit(f"Bad gin configuration ({', '.join(values.gin_file)}; bindings "
                 f"{values.gin_bindings}): {error}")
    result = static_flops(config.arguments, strict=config.method_setting == "strict",
                          convention=values.convention, densities=densities)
    print(format_table(result))


def run() -> None:
    """Entry point of `python -m adapt_tf.flops`."""
    from adapt_tf import cli

    cli.quiet_tensorflow()
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    run()
