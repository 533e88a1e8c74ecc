"""Benchmark of the `folder:` input pipeline: host memory and images/s, against one training
iteration at the same image size (docs/BENCHMARKS.md, "Input pipeline (folders)").

    python scripts/input_benchmark.py --root /tmp/input_bench            # 64 and 256 px
    python scripts/input_benchmark.py --root /tmp/input_bench --sizes 64 --counts 500

For each image size S it writes (once; reused later) folders of JPEG photos-like images of
(5/4 S) x S pixels (so every image is centre-cropped and resized, as user data usually is), in 4
class folders, one folder per count in --counts. Each measurement runs in a fresh subprocess:

* pipeline: `data.make_dataset('folder:...', batch_size=B, image_size=S, conditional=True)`,
  5 batches of warm-up, then --batches batches timed: images/s (wall), CPU seconds per batch,
  and the process's peak resident memory (ru_maxrss) minus its resident memory before the
  pipeline was built (TensorFlow loaded): what the pipeline holds. Folders of different
  counts show whether it grows with the folder (it must not: streamed).
* iteration (with --iteration, sizes with an architecture: biggan32/biggan64): one training
  iteration of the quickstart's setting at that size (class-conditional BigGAN, width 8,
  n_dis 1, batch B, ADAPT at d_G 20 %), fed from memory, median wall seconds over
  --iterations after 3 warm-up iterations; the pipeline must deliver B images in less time.

Prints one JSON line per measurement; --json writes them all.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHITECTURE_AT = {32: "biggan32", 64: "biggan64"}


def make_folder(path: str, *, count: int, size: int, classes: int = 4) -> str:
    """`count` JPEGs of (5/4 size) x size in `classes` class folders (smooth colour fields
    with noise: JPEG sizes like photos'). Kept if complete."""
    from PIL import Image

    done = os.path.join(path, ".complete")
    if os.path.exists(done):
        return path
    rng = np.random.default_rng(size)
    height, width = size, size * 5 // 4
    ys, xs = np.mgrid[0:height, 0:width] / size
    for i in range(count):
        folder = os.path.join(path, f"class_{i % classes}")
        os.makedirs(folder, exist_ok=True)
        a, b, c = rng.uniform(0, 6, 3)
        field = np.stack([np.sin(a * xs + b * ys + k * c) for k in range(3)], -1)
        noise = rng.normal(0, 0.1, field.shape)
        pixels = np.clip((field + noise + 1) * 127.5, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:06d}.jpg"), quality=90)
    open(done, "w").close()
    return path


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_pipeline(folder: str, *, size: int, batch: int, batches: int) -> dict:
    """Run in a subprocess: see the module docstring."""
    import tensorflow as tf  # noqa: F401  (loaded before the baseline)

    from adapt_tf import data

    before = _rss_mb()
    ds = data.make_dataset(f"folder:{folder}", batch_size=batch, image_size=size,
                           conditional=True, seed=0)
    iterator = iter(ds)
    for _ in range(5):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        images, _ = next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert images.shape == (batch, size, size, 3)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": "pipeline", "size": size, "batch": batch, "images": batches * batch,
            "images_per_s": batches * batch / wall, "cpu_s_per_batch": cpu / batches,
            "rss_before_mb": before, "peak_rss_mb": peak, "pipeline_mb": peak - before}


def measure_iteration(folder: str, *, size: int, batch: int, iterations: int) -> dict:
    """Run in a subprocess: see the module docstring."""
    import tempfile

    import tensorflow as tf

    from adapt_tf import data
    from adapt_tf.runs import methods, train_lib

    spec = train_lib.RunSpec(
        workdir=tempfile.mkdtemp(), total_steps=10**6, architecture=ARCHITECTURE_AT[size],
        dataset=f"folder:{folder}", method=methods.method("adapt_relaxed", g_density=0.2),
        g_width=8, d_width=8, n_dis=1, d_batch_size=batch, g_batch_size=batch)
    run = train_lib.build_run(spec)
    batch_data = next(iter(data.make_dataset(spec.dataset, batch_size=batch, image_size=size,
                                             conditional=True)))
    fed = tf.data.Dataset.from_tensors(batch_data).repeat()
    run.gan.fit(fed, epochs=1, steps_per_epoch=3, verbose=0)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run.gan.fit(fed, epochs=1, steps_per_epoch=1, verbose=0)
        times.append(time.perf_counter() - start)
    return {"kind": "iteration", "size": size, "batch": batch,
            "architecture": ARCHITECTURE_AT[size], "iteration_s": float(np.median(times)),
            "iteration_s_min": float(np.min(times))}


def _child(arguments: argparse.Namespace) -> None:
    kind, folder, size = arguments.child
    size = int(size)
    if kind == "pipeline":
        result = measure_pipeline(folder, size=size, batch=arguments.batch,
                                  batches=arguments.batches)
    else:
        result = measure_iteration(folder, size=size, batch=arguments.batch,
                                   iterations=arguments.iterations)
    print("RESULT " + json.dumps(result))


def _run_child(kind: str, folder: str, size: int, arguments: argparse.Namespace) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", kind, folder, str(size),
               f"--batch={arguments.batch}", f"--batches={arguments.batches}",
               f"--iterations={arguments.iterations}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if output.returncode or not lines:
        raise RuntimeError(f"{kind} at {size}px failed:\n{output.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="/tmp/adapt_tf_input_bench")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--iteration", action="store_true",
                        help="also time a training iteration where an architecture exists")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        return _child(arguments)
    results = [{"kind": "machine", "processor": platform.processor(), "cpus": os.cpu_count(),
                "load": os.getloadavg(), "python": platform.python_version()}]
    print(json.dumps(results[0]), flush=True)
    for size in arguments.sizes:
        for count in arguments.counts:
            folder = make_folder(os.path.join(arguments.root, f"{size}px_{count}"),
                                 count=count, size=size)
            results.append({**_run_child("pipeline", folder, size, arguments), "count": count})
            print(json.dumps(results[-1]), flush=True)
        if arguments.iteration and size in ARCHITECTURE_AT:
            results.append(_run_child("iteration", folder, size, arguments))
            print(json.dumps(results[-1]), flush=True)
    if arguments.json:
        with open(arguments.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
