"""The GAN: `SparseGAN` and what its iteration uses.

* `sparse_gan`: `SparseGAN(keras.Model)`, one `train_step` = one GAN iteration (n_dis D steps,
  the G step, the balance-ratio sample, the EMA generator).
* `losses`: the hinge and non-saturating losses. `ema`: `EMAGenerator`. `augment`: DiffAugment.
  `schedules`: learning-rate decay keyed to the iteration.
* `architectures`: the SNGAN and BigGAN networks, built from masked layers.
"""
