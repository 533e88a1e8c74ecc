"""Sparse training: masks on kernels and who changes them (docs/ALGORITHM.md §3, §4).

* `layers`: `MaskedDense`, `MaskedConv2D` (a non-trainable 0/1 mask per kernel, spectral norm
  on the masked kernel) and `masked_layers(model)`.
* `topology`: layer densities (uniform, ERK), exact-count masks, `sparsify(model, density)`.
* `dst`: the drop/grow rules `SET` and `RigL`, their cosine drop fraction and cadence.
* `sparsity`: `Sparsity`, the one path by which a `SparseGAN`'s masks change, and the
  `DynamicSparsity` callback (SDST of G, DST of D in ADAPT's strict mode).
* `gmp`: gradual magnitude pruning, the dense-to-sparse baseline, through tfmot.
"""
