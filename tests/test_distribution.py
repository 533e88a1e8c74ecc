"""Tests of adapt_tf.runs.distribution: strategies by name, chief rules, and distributed runs of
gin_configs/test/tiny.gin through train_lib that match a one-device run.

The run comparisons start subprocesses (tests/_distributed_run.py): one that splits the CPU into
two logical devices and trains with "default" and with "mirrored" on both, and two
MultiWorkerMirroredStrategy workers on 127.0.0.1 (free ports, loopback only) sharing one
workdir. All three run at once, each bounded by a timeout after which the test kills them.
"""
import csv
import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from adapt_tf.runs import distribution

import _distributed_run  # its bindings fix the optimizer that the bounds below assume
import evaluated_run

HELPER = os.path.join(os.path.dirname(__file__), "_distributed_run.py")
TIMEOUT = 1200  # seconds for all subprocesses together (a loaded 2-core machine needs ~600)
TOTAL_STEPS = 5


# ------------------------------------------------------------------------------- unit tests


def test_default_strategy_is_the_current_one():
    assert distribution.get_strategy("default") is tf.distribute.get_strategy()


@pytest.mark.parametrize("name, kwargs, match", [
    ("horovod", {}, "Unknown strategy 'horovod'"),
    ("default", {"devices": ["/cpu:0"]}, "applies to strategy 'mirrored' only"),
    ("multi_worker", {"tpu": "local"}, "applies to strategy 'tpu' only"),
    ("mirrored", {"devices": "/cpu:0"}, "non-empty list of device names"),
    ("mirrored", {"devices": []}, "non-empty list of device names"),
])
def test_bad_arguments_are_named(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        distribution.get_strategy(name, **kwargs)


@pytest.mark.parametrize("tf_config, match", [
    (None, "TF_CONFIG environment variable, which is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "needs 'cluster'"),
])
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, tf_config, match):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=match):
        distribution.get_strategy("multi_worker")


def test_mirrored_on_named_devices():
    strategy = distribution.get_strategy("mirrored", devices=["/cpu:0"])
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)


def _fake_strategy(cluster: dict, task_type: str, task_id: int):
    resolver = types.SimpleNamespace(
        task_type=task_type, task_id=task_id,
        cluster_spec=lambda: tf.train.ClusterSpec(cluster))
    return types.SimpleNamespace(cluster_resolver=resolver)


@pytest.mark.parametrize("cluster, task_type, task_id, chief", [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
])
def test_chief_and_writer_directories(tmp_path, cluster, task_type, task_id, chief):
    strategy = _fake_strategy(cluster, task_type, task_id)
    target = str(tmp_path / "checkpoints")
    written = distribution.writer_directory(target, strategy)
    assert distribution.is_chief(strategy) is chief
    if chief:
        assert written == target
    else:
        assert written == os.path.join(target, f".{task_type}_{task_id}_tmp")
        os.makedirs(written)
        distribution.remove_writer_directory(written, target)
        assert not os.path.exists(written) and os.path.isdir(target)


def test_one_process_is_chief(tmp_path):
    assert distribution.is_chief()
    assert distribution.writer_directory(str(tmp_path)) == str(tmp_path)


# ------------------------------------------------------------------------- distributed runs


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker_commands(out_dir, workdir, total_steps):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        yield [sys.executable, HELPER, "worker", str(out_dir), str(workdir),
               str(total_steps)], env


def _run_all(commands, log_dir) -> None:
    """Starts every (argv, env), waits for all within TIMEOUT, kills the rest on failure."""
    processes = []
    for i, (argv, env) in enumerate(commands):
        log = open(os.path.join(log_dir, f"process_{i}.log"), "w")
        processes.append((subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True), log))
    try:
        for process, _ in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process, log in processes:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
            log.close()
    for i, (process, _) in enumerate(processes):
        if process.returncode != 0:
            with open(os.path.join(log_dir, f"process_{i}.log")) as f:
                tail = f.read()[-4000:]
            pytest.fail(f"{commands[i][0][2:]} exited with {process.returncode}:\n{tail}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The states of: default, mirrored (2 logical CPUs), the 2 workers, and the 2 workers
    started again on the finished workdir (they restore the chief's checkpoint)."""
    out = tmp_path_factory.mktemp("distributed")
    workdir = out / "multi_worker_run"
    commands = [([sys.executable, HELPER, "reference", str(out)], dict(os.environ)),
                *_worker_commands(out, workdir, TOTAL_STEPS)]
    _run_all(commands, out)
    _run_all([([sys.executable, HELPER, "switches", str(out)], dict(os.environ))], out)
    first = {name: dict(np.load(out / f"{name}.npz"))
             for name in ("default", "mirrored", "default_decay", "mirrored_decay", "worker_0",
                          "worker_1")}
    resumed_dir = out / "resumed"
    resumed_dir.mkdir()
    _run_all(list(_worker_commands(resumed_dir, workdir, TOTAL_STEPS)), resumed_dir)
    resumed = {name: dict(np.load(resumed_dir / f"{name}.npz"))
               for name in ("worker_0", "worker_1")}
    return types.SimpleNamespace(**first, resumed=resumed, workdir=workdir, out=out)


# How far two correct runs' weights may drift apart. The runs differ only in the order of
# their float32 sums (one device, two replicas, two workers; another CPU's kernels). Every
# weight entry is moved by plain SGD (see _distributed_run.BINDINGS), so after T steps the two
# runs differ by at most lr * sum_t |delta g_t|, where delta g_t is the difference of the two
# computed gradients. A gradient entry sums at most n = d_batch * 32 * 32 = 8192 products
# (a 3x3 conv kernel entry over the batch and the image), and two orders of such a sum differ
# by at most n * u times the sum of |terms| (u = 2**-24, float32), which is of order 1 here
# (hinge-loss gradients of unit scale). Hence ATOL = lr * T * n * u; RTOL covers values that
# are not optimizer-driven (spectral-norm vectors) and are recomputed with a few ulps of
# round-off. A distributed bug (a loss scaled by the per-replica batch, a missing all-reduce,
# replicas holding other masks) moves weights by lr * |g| per step, far above ATOL.
ROUNDOFF_N = 8 * 32 * 32
ATOL = _distributed_run.SGD_LEARNING_RATE * TOTAL_STEPS * ROUNDOFF_N * 2.0 ** -24
RTOL = 1e-5


def _assert_same_run(state, reference, *, exact=False):
    """Same logs, masks, densities, BR window and weights (float tolerance unless exact).

    Discrete state (masks, iteration, mask-change counts, BR window positions) must match
    exactly whatever the CPU. Weights must match within ATOL/RTOL above. The logged losses and
    BR values are ratios and differences of the D scores, which amplify the scores' round-off
    by at most |GF| / |GF - DF| (about 10 here): rtol 1e-4.
    """
    assert set(state) == set(reference)
    for key in sorted(reference):
        if key.startswith("start/"):
            continue  # the state before training, recorded for the resume checks
        if key.startswith("mask/") or key in ("step", "g_mask_changes", "br_count",
                                              "br_position", "g_density", "d_density",
                                              "d_density_start", "ever_active"):
            np.testing.assert_array_equal(state[key], reference[key], err_msg=key)
        elif exact:
            np.testing.assert_array_equal(state[key], reference[key], err_msg=key)
        elif "moving_variance" in key:
            # One device runs Keras' fused BatchNorm, whose moving variance averages the
            # unbiased batch variance; synchronised BatchNorm (several replicas) averages the
            # biased one: they differ by less than 1 / (n - 1), n >= 8 * 4 * 4 values here.
            np.testing.assert_allclose(state[key], reference[key], rtol=1 / 127, err_msg=key)
        elif "/" in key:  # a weight of G, D or the EMA generator
            np.testing.assert_allclose(state[key], reference[key], rtol=RTOL, atol=ATOL,
                                       err_msg=key)
        else:  # logs and the BR window
            np.testing.assert_allclose(state[key], reference[key], rtol=1e-4, atol=1e-6,
                                       err_msg=key)


@pytest.mark.slow
def test_the_tiny_run_updates_g_masks_and_d_density(runs):
    default = runs.default
    assert default["step"] == TOTAL_STEPS and default["logs"].shape == (TOTAL_STEPS, 3)
    assert default["g_mask_changes"] > 0  # the G-DST update after iteration 4
    assert default["ever_active"][0] > default["g_density"]  # it tried new G weights
    assert default["d_density"] != default["d_density_start"]  # the ADAPT decision after 4
    assert default["br_count"] == 2 and np.all(np.isfinite(default["br_samples"]))


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(runs):
    _assert_same_run(runs.mirrored, runs.default)


@pytest.mark.slow
def test_decayed_rates_and_diff_aug_on_two_logical_cpus_match_one_device(runs):
    # train.lr_decay reads the iteration from a mirrored variable inside the replicas;
    # train.diff_aug draws for the global batch and each replica augments its share.
    _assert_same_run(runs.mirrored_decay, runs.default_decay)
    rate = _distributed_run.SGD_LEARNING_RATE * (1 - 2 / 3)  # iteration 2 of 3, the last
    for state in (runs.default_decay, runs.mirrored_decay):
        np.testing.assert_allclose(state["learning_rates"], [rate, rate], rtol=1e-6)
    np.testing.assert_allclose(runs.default["learning_rates"],
                               [_distributed_run.SGD_LEARNING_RATE] * 2, rtol=1e-6)


@pytest.mark.slow
def test_the_final_test_runs_under_mirrored_and_hands_back_the_trained_model(runs):
    # train.test_eval on both strategies: the best checkpoint's scores are those the
    # training-time evaluation logged for it (same weights, same samples), and the model
    # returned is the trained one (iteration 3), whichever checkpoint was tested.
    for name in ("default_decay", "mirrored_decay"):
        fids, entry = evaluated_run.final_test(runs.out / f"run_{name}")
        best = min(fids, key=fids.get)
        assert (entry["checkpoint_kind"], entry["step"], entry["trained_steps"]) == (
            "best", best, 3), name
        # metrics.csv holds 6 significant digits: a relative error up to 5e-6 on top.
        assert entry["fid"] == pytest.approx(fids[best], rel=6e-6), name
        assert entry["fid_test"] > 0 and entry["test_split"] == "test", name
        assert getattr(runs, name)["step"] == 3


@pytest.mark.slow
def test_workers_agree_exactly_and_match_one_process(runs):
    _assert_same_run(runs.worker_1, runs.worker_0, exact=True)
    _assert_same_run(runs.worker_0, runs.default)


@pytest.mark.slow
def test_only_the_chief_writes_and_every_worker_resumes_from_it(runs):
    workdir = runs.workdir
    leftovers = [os.path.join(root, name) for root, dirs, _ in os.walk(workdir)
                 for name in dirs if name.endswith("_tmp")]
    assert leftovers == []
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith(
        f"ckpt-{TOTAL_STEPS}")
    with open(workdir / "metrics.csv") as f:
        steps = [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]
    assert steps == list(range(1, TOTAL_STEPS + 1))
    for index in (0, 1):
        resumed = runs.resumed[f"worker_{index}"]
        trained = getattr(runs, f"worker_{index}")
        assert resumed["logs"].shape == (0, 3)  # restored, nothing left to train
        for key in trained:
            if key not in ("logs", "g_mask_changes", "d_density_start") and \
                    not key.startswith("start/"):
                np.testing.assert_array_equal(resumed[key], trained[key], err_msg=key)


def _sample_logs(workdir):
    """(br.csv rows, masks.csv rows) of a run of `train.sample_logs`."""
    logs = []
    for name in ("br.csv", "masks.csv"):
        with open(os.path.join(workdir, name)) as f:
            logs.append(list(csv.DictReader(f)))
    return logs


@pytest.mark.slow
def test_sample_logs_agree_across_strategies(runs):
    # One BR row per iteration and the same mask changes whichever strategy trained: the
    # discrete columns exactly, the scores to the losses' tolerance (see _assert_same_run).
    reference = _sample_logs(runs.out / "run_default")
    for workdir in (runs.out / "run_mirrored", runs.workdir):
        br_rows, mask_rows = _sample_logs(workdir)
        assert [(r["step"], r["kept"]) for r in br_rows] == [(r["step"], r["kept"])
                                                             for r in reference[0]]
        assert [int(r["step"]) for r in br_rows] == list(range(1, TOTAL_STEPS + 1))
        for key in ("gf", "df", "dr", "ratio"):
            np.testing.assert_allclose([float(r[key]) for r in br_rows],
                                       [float(r[key]) for r in reference[0]],
                                       rtol=1e-4, atol=1e-6, err_msg=key)
        assert mask_rows == reference[1] and len(mask_rows) == 2  # G-DST and ADAPT after 4
