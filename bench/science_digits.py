"""Experiment 2 of the science bench: sklearn 8x8 digits with captions, trained networks.

Three networks with the same architecture (bench/science_net.py), initial weights, batches and
number of updates:
- `prox`: proximal matching on the four evaluated grids (N = 5, 10, 20, 50);
- `score (grids)`: eps-MSE at exactly the times a score sampler queries on those grids
  (t_k = k / N, k = 1..N), so it gets the same restriction to the evaluated grids as `prox`;
- `score (all t)`: eps-MSE with t uniform on [t_min, 1], the usual score baseline.
Metrics: the Frechet distance in the hidden features of a digit classifier (an FID stand-in that
runs on CPU) and the classifier's accuracy on the prompted digit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bench.science_net import DigitEpsNet
from bench.science_table import Measure
from proxt2i import SAMPLERS
from proxt2i.ema_adamw import adamw_with_ema
from proxt2i.fid import frechet_distance
from proxt2i.objectives.base import EpsNet, Objective, per_sample
from proxt2i.objectives.eps_mse import EpsMseConfig
from proxt2i.objectives.prox_matching import ProxMatchingConfig
from proxt2i.samplers.base import SCORE_LAMBDA, EpsFn, Family
from proxt2i.schedule import VPSchedule
from proxt2i.text_context import TextContext

EXPERIMENT = "digits"
GRIDS = (5, 10, 20, 50)
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# sampler name -> (network, table label)
EVALUATED: tuple[tuple[str, str], ...] = (
    ("pda_hybrid", "prox"),
    ("score_sde", "score (grids)"),
    ("score_ode", "score (grids)"),
    ("score_sde", "score (all t)"),
    ("score_ode", "score (all t)"),
)
log = logging.getLogger("science")


@dataclass(frozen=True)
class DigitData:
    """Images in [-1, 1] (B, 1, 8, 8), labels, and the text context of every caption
    (rows 0..9: "a handwritten digit <name>", row 10: the empty prompt)."""

    images: torch.Tensor
    labels: torch.Tensor
    ctx: TextContext

    def context(self, rows: torch.Tensor) -> TextContext:
        """The contexts of caption rows (10 = the empty prompt), padded alike."""
        return self.ctx[rows]


def digit_captions() -> list[str]:
    return [f"a handwritten digit {name}" for name in NUMBERS]


def digits_data(text: Literal["class", "minilm"] = "class") -> DigitData:
    """The 1797 digits; `class`: each caption is one one-hot token (11-d, the empty prompt its
    own class), `minilm`: the embedded MiniLM encoder's tokens of the captions."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
    if text == "class":
        ctx = TextContext.unmasked(torch.eye(11)[:, None, :])
    else:
        from proxt2i.text import MiniLmConfig

        ctx = MiniLmConfig().build().encode([*digit_captions(), ""])
    return DigitData(x, torch.as_tensor(d.target), ctx)


class GridEpsMse:
    """eps-MSE at the times a score sampler queries on the grids of a proximal objective:
    t_k = k / N (Euler steps at t_N..t_2, Tweedie at t_1; samplers/base.py).

    N is drawn with the proximal objective's step weights and k uniform in 1..N, as proximal
    matching draws its steps (objectives/prox_matching.py), so both see the same grids.
    """

    name = "eps_mse_grids"
    family: Family = "score"

    def __init__(self, prox: ProxMatchingConfig) -> None:
        self.counts = torch.tensor(prox.step_counts, dtype=torch.float64)
        self.weights = prox.step_weights.weights(self.counts)
        self.schedule = VPSchedule()

    def phase(self, step: int) -> tuple[str, int]:
        """One learning-rate phase, as eps_mse."""
        return "eps_mse", 0

    def times(self, batch: int) -> torch.Tensor:
        n = self.counts[torch.multinomial(self.weights, batch, replacement=True)]
        k = torch.floor(torch.rand(batch, dtype=torch.float64) * n) + 1
        return k / n

    def loss(self, net: EpsNet, x0: torch.Tensor, step: int) -> torch.Tensor:
        del step  # no schedule on this loss
        t64 = self.times(x0.shape[0])
        noise = torch.randn_like(x0)
        x_t = self.schedule.add_noise(x0, noise, t64)
        lam = torch.full((x0.shape[0],), SCORE_LAMBDA, dtype=x0.dtype)
        return per_sample((net(x_t, t64.to(x0), lam) - noise) ** 2).mean()


@dataclass(frozen=True)
class TrainBudget:
    """Updates per network, batch size, learning rate (AdamW) and the EMA decay."""

    iters: int
    batch: int = 128
    lr: float = 3e-3
    ema_decay: float = 0.99  # an average over the last ~100 updates
    betas: tuple[float, float] = (0.9, 0.999)  # torch.optim.AdamW's defaults
    weight_decay: float = 0.01


def objectives(budget: TrainBudget) -> dict[str, Objective]:
    """The three networks' losses. Proximal matching: L1 for the first 40% of the updates, then
    zeta 1.0 halved once at 80% (ProxDM's MNIST config anneals 1.0 -> 0.25 in two halvings;
    one halving here, as a short run ends before a second would help). With this network a
    20% warm-up gives the same accuracy (0.79 at N = 10 after 800 updates, one seed)."""
    prox = ProxMatchingConfig(
        step_counts=GRIDS,
        l1_warmup_steps=2 * budget.iters // 5,
        zeta_milestones=(4 * budget.iters // 5,),
    )
    return {
        "prox": prox.build(),
        "score (grids)": GridEpsMse(prox),
        "score (all t)": EpsMseConfig().build(),
    }


def train_nets(data: DigitData, budget: TrainBudget, seed: int) -> dict[str, DigitEpsNet]:
    """Every objective's network, from the same initial weights, on the same batches; returns
    the EMA networks in eval mode. 10% of the captions are dropped to the empty prompt."""
    objs = objectives(budget)
    nets, emas, opts = {}, {}, {}
    for name in objs:
        torch.manual_seed(seed)
        nets[name] = DigitEpsNet(data.images[0].numel(), data.ctx.tokens.shape[-1])
        opts[name], emas[name] = adamw_with_ema(nets[name], budget)
    gen = torch.Generator().manual_seed(seed)
    for step in range(budget.iters):
        idx = torch.randint(len(data.images), (budget.batch,), generator=gen)
        drop = torch.rand(len(idx), generator=gen) < 0.1
        c = data.context(torch.where(drop, 10, data.labels[idx]))
        for name, obj in objs.items():
            net = nets[name]
            loss = obj.loss(bind(net, c), data.images[idx], step)
            opts[name].zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opts[name].step()
            emas[name].update_parameters(net)
    log.info("digits, seed %d: trained %d networks x %d updates", seed, len(objs), budget.iters)
    return {name: ema.module.eval() for name, ema in emas.items()}  # type: ignore[misc]


class DigitClassifier:
    """An MLP on flattened digits in [-1, 1]: hidden features (for the Frechet distance),
    class probabilities (the GRPO reward) and predictions (the accuracy)."""

    def __init__(self, data: DigitData) -> None:
        from sklearn.neural_network import MLPClassifier

        flat = data.images.reshape(len(data.images), -1).numpy()
        self.clf: Any = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
        self.clf.fit(flat, data.labels.numpy())
        self.reference = self.features(data.images.numpy())

    def features(self, images: np.ndarray) -> np.ndarray:
        f = images.reshape(len(images), -1)
        return np.maximum(f @ self.clf.coefs_[0] + self.clf.intercepts_[0], 0)

    def proba(self, images: np.ndarray) -> np.ndarray:
        return self.clf.predict_proba(images.reshape(len(images), -1))

    def metrics(self, images: np.ndarray, want: np.ndarray) -> dict[str, float]:
        """FD to all 1797 training digits, accuracy and mean probability of the prompted digit."""
        p = self.proba(images)
        return {
            "FD": frechet_distance(self.features(images), self.reference),
            "acc": float((p.argmax(1) == want).mean()),
            "p(digit)": float(p[np.arange(len(want)), want].mean()),
        }


def bind(net: DigitEpsNet, ctx: TextContext) -> EpsFn:
    return lambda y, t, lam: net(y, t, lam, ctx)


def sample_digits(
    net: DigitEpsNet, sampler_name: str, ctx: TextContext, steps: int, seed: int
) -> np.ndarray:
    """Unguided (w = 1) samples, clamped to [-1, 1], one per context row."""
    sampler = SAMPLERS[sampler_name]().build()  # type: ignore[attr-defined]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        noise = torch.randn(len(ctx), 1, 8, 8, generator=g)
        return sampler.sample(bind(net, ctx), noise, steps, g).clamp(-1, 1).numpy()


def digit_measures(
    nets: dict[str, DigitEpsNet],
    data: DigitData,
    clf: DigitClassifier,
    n: int,
    seed: int,
    method: Callable[[str, str], str] = lambda s, net: f"{s} [{net}]",
) -> list[Measure]:
    """Every evaluated (sampler, network) pair at every grid; prompts cycle through 0..9."""
    want = np.arange(n) % 10
    ctx = data.context(torch.as_tensor(want))
    out = []
    for sampler_name, net_name in EVALUATED:
        for k in GRIDS:
            images = sample_digits(nets[net_name], sampler_name, ctx, k, 10_000 + seed)
            for metric, v in clf.metrics(images, want).items():
                out.append(Measure(EXPERIMENT, method(sampler_name, net_name), k, metric, seed, v))
    log.info("digits, seed %d: sampled", seed)
    return out
