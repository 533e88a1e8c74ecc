"""A plain PyTorch SNGAN-32 dense training iteration: scripts/benchmark.py's same-run baseline.

Written here (not the official ADAPT code) to do the work of adapt_tf's dense iteration, layer
for layer, so that the benchmark can time both in one process under the same load:

* G: linear z(128) -> 4x4xW, three up-blocks (BN-ReLU-up2-conv3x3-BN-ReLU-conv3x3, shortcut
  up2-conv1x1), BN-ReLU-conv3x3 to RGB, tanh; BatchNorm eps 1e-5, momentum 0.1; no SN.
* D: optimized block 3 -> W (conv3x3-ReLU-conv3x3-avgpool, shortcut avgpool-conv1x1), a
  down-block W -> W (shortcut conv1x1-avgpool), two blocks W -> W (identity shortcut), ReLU,
  global sum pool, linear W -> 1 without bias; `torch.nn.utils.spectral_norm` (one power
  iteration per training forward, eps 1e-12) on every conv and linear.
* One iteration: n_dis D steps, each on d_batch reals and d_batch fresh fakes (G forward without
  a graph), D called separately on reals and fakes (two power iterations, as the official code
  and adapt_tf do), hinge loss, Adam(2e-4, 0, 0.9); then one G step on g_batch fresh z with
  the non-saturating hinge G loss -mean(D(G(z))), D's parameters frozen for it (adapt_tf's
  compiled step does not compute D's weight gradients in the G step either; the official code
  does, and zeroes them); then the EMA generator (decay 0.999) is updated.

PyTorch's default NCHW layout and default kernels (oneDNN on x86) are used, with as many
threads as the caller sets. Only the benchmark imports this module; torch is the optional
`bench` extra of adapt_tf.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

LATENT_DIM = 128


def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module, n_power_iterations=1, eps=1e-12)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class GBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5, momentum=0.1)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(_up(F.relu(self.bn1(x))))
        h = self.conv2(F.relu(self.bn2(h)))
        return h + self.shortcut(_up(x))


class Generator(nn.Module):
    def __init__(self, width: int = 256, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.width = width
        self.linear = nn.Linear(latent_dim, 4 * 4 * width)
        self.blocks = nn.Sequential(*(GBlock(width, width) for _ in range(3)))
        self.bn = nn.BatchNorm2d(width, eps=1e-5, momentum=0.1)
        self.conv = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z):
        h = self.linear(z).view(-1, self.width, 4, 4)
        h = self.blocks(h)
        return torch.tanh(self.conv(F.relu(self.bn(h))))


class OptimizedBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.shortcut = _sn(nn.Conv2d(cin, cout, 1))

    def forward(self, x):
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        self.conv1 = _sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.conv2 = _sn(nn.Conv2d(cout, cout, 3, padding=1))
        learnable = downsample or cin != cout
        self.shortcut = _sn(nn.Conv2d(cin, cout, 1)) if learnable else None

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h, shortcut = F.avg_pool2d(h, 2), F.avg_pool2d(shortcut, 2)
        return h + shortcut


class Discriminator(nn.Module):
    def __init__(self, width: int = 128):
        super().__init__()
        self.blocks = nn.Sequential(OptimizedBlock(3, width), DBlock(width, width, True),
                                    DBlock(width, width, False), DBlock(width, width, False))
        self.linear = _sn(nn.Linear(width, 1, bias=False))

    def forward(self, x):
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.linear(h).view(-1)


class DenseIteration:
    """Models, optimizers and EMA of one dense SNGAN-32 run; `__call__` runs one iteration.

    images: float32 [n_dis * d_batch, 3, 32, 32] (fixed synthetic reals; D step k takes
    images[k::n_dis], as adapt_tf's train step does).
    """

    def __init__(self, *, g_width: int, d_width: int, d_batch: int, g_batch: int, n_dis: int,
                 ema_decay: float | None = 0.999, seed: int = 0):
        torch.manual_seed(seed)
        self.generator = Generator(g_width)
        self.discriminator = Discriminator(d_width)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), 2e-4, betas=(0.0, 0.9))
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), 2e-4,
                                            betas=(0.0, 0.9))
        self.ema_decay = ema_decay
        self.ema = [p.detach().clone() for p in self.generator.parameters()]
        self.d_batch, self.g_batch, self.n_dis = d_batch, g_batch, n_dis
        self.images = torch.rand(n_dis * d_batch, 3, 32, 32) * 2 - 1

    def __call__(self) -> tuple[float, float]:
        """One iteration; returns (last D loss, G loss) as floats (the step has finished)."""
        G, D = self.generator, self.discriminator
        G.train()
        D.train()
        for k in range(self.n_dis):
            real = self.images[k::self.n_dis]
            with torch.no_grad():
                fake = G(torch.randn(self.d_batch, LATENT_DIM))
            self.d_optimizer.zero_grad(set_to_none=True)
            d_loss = F.relu(1.0 - D(real)).mean() + F.relu(1.0 + D(fake)).mean()
            d_loss.backward()
            self.d_optimizer.step()
        D.requires_grad_(False)
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss = -D(G(torch.randn(self.g_batch, LATENT_DIM))).mean()
        g_loss.backward()
        self.g_optimizer.step()
        D.requires_grad_(True)
        if self.ema_decay is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, [p.detach() for p in G.parameters()],
                                     1.0 - self.ema_decay)
        return float(d_loss.detach()), float(g_loss.detach())


def counted_macs(iteration: DenseIteration) -> dict[str, float]:
    """Multiply-accumulates of one iteration as torch executes it (FlopCounterMode / 2).

    Counts the convolutions (forward, input and weight gradients, as dispatched) and the
    matrix products of the linear layers; not BatchNorm, pooling, the spectral-norm power
    iteration's matrix-vector products or Adam. Runs (and so trains) one iteration.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        iteration()
    by_op = {str(op): flops / 2 for op, flops in counter.get_flop_counts()["Global"].items()}
    return {"total": counter.get_total_flops() / 2, "by_op": by_op}
