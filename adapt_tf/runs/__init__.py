"""Runs: a training run from its configuration to its workdir.

* `workdir`: the workdir's file names; `storage`: reading and writing them safely (the lock,
  atomic writes, JSON records, usable checkpoints, torn CSV rows).
* `writers`: the callbacks that write a run's files while `fit` runs (metrics CSV,
  TensorBoard, sample grids, checkpoints), and the stop on non-finite losses.
* `methods`: every method of the paper as a preset; `paper`: the paper's grid and numbers.
* `train_lib`: `RunSpec`, `train(...)` and `build_run`, the gin-free composition root;
  `configurables`: the one module that registers components with gin.
* `records`: a run's recorded configuration read back (gin-free).
* `distribution`: a `tf.distribute` strategy from a name; `preemption`: graceful stops.
"""
