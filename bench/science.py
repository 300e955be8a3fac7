"""Does proximal sampling beat score sampling at few steps? (ProxDM, Fang et al. NeurIPS 2025)

Two experiments, one table:
1. 2-D Gaussian mixture (8 components on a ring), exact networks: the score is closed-form and
   the proximal operator is solved numerically to convergence, so only the discretisation
   differs. Metrics: exact empirical W2 (optimal assignment) between the samples and as many
   target draws ("target vs target" gives the W2 of two independent target draws: the noise
   floor at that size), the off-mode fraction and the spread around the modes (mode_stats).
2. sklearn 8x8 digits, captions "a handwritten digit three": one proximal network (proximal
   matching) and one score network (eps-MSE) with the same U-Net, batches and step budget.
   Metrics: Frechet distance in the hidden features of a digit classifier (an FID stand-in that
   runs on 2 CPU cores) and the classifier's accuracy on the prompted digit.

    python bench/science.py            # ~7 min on 2 cores
    python bench/science.py --quick    # ~1 min; digits undertrained (plumbing check only)
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from proxt2i import SAMPLERS
from proxt2i.samplers.base import EpsFn
from proxt2i.schedule import VPSchedule

SCHEDULE = VPSchedule()
log = logging.getLogger("science")
Row = tuple[str, str, int, str]


# ---------------------------------------------------------------- 2-D mixture, exact networks
class RingMixture:
    """Equal-weight isotropic Gaussians N(mu_i, s0^2 I) on a circle; p_t is again a mixture."""

    def __init__(self, k: int = 8, radius: float = 1.2, s0: float = 0.08) -> None:
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        self.mu = radius * torch.stack([ang.cos(), ang.sin()], 1)
        self.s0 = s0

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.mu), (n,), generator=gen)
        return self.mu[idx] + self.s0 * torch.randn(n, 2, generator=gen, dtype=torch.float64)

    def params(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Component means and variance of p_t (the same for every sample: t is shared)."""
        a = SCHEDULE.alpha(t[:1].double())
        return a.sqrt() * self.mu, a * self.s0**2 + 1 - a

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, v = self.params(t)
        r = torch.softmax(-((x[:, None] - m[None]) ** 2).sum(-1) / (2 * v), dim=1)
        return ((r[..., None] * (m[None] - x[:, None])).sum(1)) / v

    def prox(self, y: torch.Tensor, t: torch.Tensor, lam: float) -> torch.Tensor:
        """argmin_x lam (-log p_t(x)) + |x - y|^2 / 2, from every single-component solution.

        Equal isotropic components make the stationarity condition a fixed point,
        x = (v y + lam sum_i r_i(x) m_i) / (v + lam), whose iteration is a majorize-minimize
        (EM-like) descent; the candidate with the lowest objective is kept.
        """
        m, v = self.params(t)
        x = (v * y[:, None] + lam * m[None]) / (v + lam)  # (B, K, 2) candidates
        for _ in range(30):
            r = torch.softmax(-((x[:, :, None] - m[None, None]) ** 2).sum(-1) / (2 * v), dim=2)
            x = (v * y[:, None] + lam * (r @ m)) / (v + lam)
        logp = torch.logsumexp(-((x[:, :, None] - m[None, None]) ** 2).sum(-1) / (2 * v), dim=2)
        obj = -lam * logp + 0.5 * ((x - y[:, None]) ** 2).sum(-1)
        return x[torch.arange(len(y)), obj.argmin(1)]

    def eps_fn(self, family: str) -> EpsFn:
        def prox_eps(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
            lam_f = float(lam[0])
            return (y - self.prox(y, t, lam_f)) / math.sqrt(lam_f)

        def score_eps(x: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
            a = SCHEDULE.alpha(t[:1].double())
            return -(1 - a).sqrt() * self.score(x, t)

        return prox_eps if family == "prox" else score_eps


def w2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W2 between equal-size empirical measures (optimal assignment)."""
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    r, c = linear_sum_assignment(cost)
    return float(np.sqrt(cost[r, c].mean()))


def mode_stats(x: np.ndarray, mix: RingMixture) -> str:
    """Off-mode fraction (farther than 3 s0 from every mode; 1.1% for the target) and spread
    (mean distance to the nearest mode over its target value s0 sqrt(pi / 2); 1 is right,
    below 1 is collapsed onto the modes, above 1 is blurred)."""
    d = np.sqrt(((x[:, None] - mix.mu.numpy()[None]) ** 2).sum(-1)).min(1)
    spread = d.mean() / (mix.s0 * math.sqrt(math.pi / 2))
    return f"off-mode {(d > 3 * mix.s0).mean():.3f}  spread {spread:.2f}"


def mixture_rows(n: int, steps: tuple[int, ...]) -> list[Row]:
    mix, gen = RingMixture(), torch.Generator().manual_seed(0)
    target = mix.sample(n, gen).numpy()
    floor = w2(target, mix.sample(n, gen).numpy())
    rows: list[Row] = [
        ("2-D mixture", "target vs target", 0, f"W2 {floor:.4f}  {mode_stats(target, mix)}")
    ]
    for name in ("pda_hybrid", "pda_backward", "score_sde", "score_ode"):
        sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
        for k in steps:
            g = torch.Generator().manual_seed(1)
            noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
            try:
                x = sampler.sample(mix.eps_fn(sampler.family), noise, k, g).numpy()
                metric = f"W2 {w2(x, target):.4f}  {mode_stats(x, mix)}"
                rows.append(("2-D mixture", name, k, metric))
                log.info("%s", rows[-1])
            except ValueError:
                rows.append(("2-D mixture", name, k, "n/a (gamma_k >= 2)"))
    return rows


# ---------------------------------------------------------------- digits, trained networks
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits_data() -> tuple[torch.Tensor, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
    return x, d.target, [f"a handwritten digit {NUMBERS[y]}" for y in range(10)]


def train_pair(
    x: torch.Tensor, labels: np.ndarray, ctx: torch.Tensor, iters: int
) -> dict[str, torch.nn.Module]:
    """Prox and score nets with the same U-Net, seed, batches and number of updates."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from proxt2i.model import BackboneConfig
    from proxt2i.objectives.eps_mse import EpsMseConfig
    from proxt2i.objectives.prox_matching import ProxMatchingConfig

    backbone = BackboneConfig()  # the CPU preset: ~270k parameters
    objectives = {
        "prox": ProxMatchingConfig(
            step_counts=(5, 10, 20, 50),
            l1_warmup_steps=iters // 2,
            zeta_milestones=(3 * iters // 4,),
        ).build(),
        "score": EpsMseConfig().build(),
    }
    nets, emas, opts = {}, {}, {}
    for fam in objectives:
        torch.manual_seed(0)
        nets[fam] = backbone.build(1, 8, ctx.shape[-1])
        decay = 1 - 10 / iters  # EMA over the last ~10% of this short run
        emas[fam] = AveragedModel(nets[fam], multi_avg_fn=get_ema_multi_avg_fn(decay))
        opts[fam] = torch.optim.AdamW(nets[fam].parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for step in range(iters):
        idx = torch.randint(len(x), (64,), generator=gen)
        c = ctx[torch.as_tensor(labels)[idx]]
        c = torch.where(torch.rand(len(idx), 1, 1, generator=gen) < 0.1, ctx[10:11], c)
        for fam, obj in objectives.items():
            loss = obj.loss(lambda y, t, lam, n=nets[fam], c=c: n(y, t, lam, c), x[idx], step)
            opts[fam].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(nets[fam].parameters(), 1.0)
            opts[fam].step()
            emas[fam].update_parameters(nets[fam])
        if step % 100 == 0:
            log.info("digits training step %d / %d", step, iters)
    return {fam: emas[fam].module.eval() for fam in objectives}


def digit_classifier(x: torch.Tensor, labels: np.ndarray) -> Callable[[np.ndarray], tuple]:
    """An MLP on flattened digits; returns f(images) -> (hidden features, predicted labels)."""
    from sklearn.neural_network import MLPClassifier

    flat = x.reshape(len(x), -1).numpy()
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0).fit(flat, labels)

    def feats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = images.reshape(len(images), -1)
        hidden = np.maximum(f @ clf.coefs_[0] + clf.intercepts_[0], 0)
        return hidden, clf.predict(f)

    return feats


def bind(net: torch.nn.Module, ctx: torch.Tensor) -> EpsFn:
    return lambda y, t, lam: net(y, t, lam, ctx)


def digits_rows(iters: int, n: int, steps: tuple[int, ...]) -> list[Row]:
    from proxt2i.fid import frechet_distance
    from proxt2i.text import MiniLmConfig

    x, labels, captions = digits_data()
    ctx = MiniLmConfig().build().encode([*captions, ""])  # row 10: the unconditional prompt
    start = time.perf_counter()
    nets = train_pair(x, labels, ctx, iters)
    trained = time.perf_counter() - start
    feats = digit_classifier(x, labels)
    ref_feats, _ = feats(x.numpy())
    want = np.arange(n) % 10
    rows: list[Row] = [("digits", f"(train {iters} it, {trained:.0f}s)", 0, "")]
    for name in ("pda_hybrid", "score_sde", "score_ode"):
        sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
        net = nets[sampler.family]
        c = ctx[torch.as_tensor(want)]
        for k in steps:
            g = torch.Generator().manual_seed(1)
            with torch.no_grad():
                noise = torch.randn(n, 1, 8, 8, generator=g)
                out = sampler.sample(bind(net, c), noise, k, g).clamp(-1, 1)
            f, pred = feats(out.numpy())
            fd, acc = frechet_distance(f, ref_feats), float((pred == want).mean())
            rows.append(("digits", name, k, f"FD {fd:7.2f}  acc {acc:.2f}"))
            log.info("%s", rows[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller budget (~1 min)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    rows = mixture_rows(600 if args.quick else 2000, (5, 10, 20))
    rows += digits_rows(300 if args.quick else 3000, 300 if args.quick else 1000, (5, 10, 20, 50))
    print(f"{'experiment':<12} {'sampler':<24} {'steps':>5}  metric")
    for exp, sampler, steps, metric in rows:
        print(f"{exp:<12} {sampler:<24} {steps or '':>5}  {metric}")
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
