"""Does proximal sampling beat score sampling at few steps? (ProxDM, Fang et al. NeurIPS 2025)

Three experiments, every one repeated over seeds (table cells: mean ± sample std over seeds):
1. 2-D ring of 8 Gaussians with exact networks (bench/science_mixture.py): only the
   discretisation differs; exact W2, off-mode fraction, spread around the modes.
2. sklearn 8x8 digits with captions (bench/science_digits.py): a proximal network and two score
   networks (on the same grids, and on every t) with the same network (bench/science_net.py),
   initial weights, batches and number of updates; Frechet distance in a digit classifier's
   features, its accuracy on the prompted digit and its mean probability of that digit.
3. GRPO on the digits' proximal network (bench/science_grpo.py), reward: that probability.

    python -m bench.science --quick    # small budgets: 2 min 11 s on 2 idle cores (203 CPU s)
    python -m bench.science            # full budgets: 6 min 10 s on 2 idle cores (684 CPU s)
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from threadpoolctl import threadpool_limits

from bench.science_digits import DigitClassifier, TrainBudget, digit_measures, digits_data
from bench.science_digits import train_nets as train_digit_nets
from bench.science_grpo import EXPERIMENT as GRPO_EXPERIMENT
from bench.science_grpo import GrpoBudget, grpo_measures
from bench.science_mixture import mixture_measures
from bench.science_table import Measure, Spread, aggregate, markdown_table, spread

log = logging.getLogger("science")


@dataclass(frozen=True)
class Mode:
    """Sample counts and budgets of one bench mode."""

    ring_samples: int
    digit_train: TrainBudget
    digit_samples: int
    grpo: GrpoBudget


QUICK = Mode(400, TrainBudget(iters=800), 200, GrpoBudget(iterations=120))
FULL = Mode(2000, TrainBudget(iters=3000), 500, GrpoBudget(iterations=200))


def seed_measures(mode: Mode, seed: int) -> tuple[list[Measure], float]:
    """Everything one seed measures (the ring, the three digit networks, their GRPO) and the
    CPU seconds it took."""
    cpu = time.process_time()
    measures = mixture_measures(mode.ring_samples, (5, 10, 20), seed)
    data = digits_data()
    clf = DigitClassifier(data)  # fitted with a fixed seed: the same in every process
    nets = train_digit_nets(data, mode.digit_train, seed)
    measures += digit_measures(nets, data, clf, mode.digit_samples, seed)
    measures += grpo_measures(nets["prox"], data, clf, mode.grpo, mode.digit_samples, seed)
    return measures, time.process_time() - cpu


def _start_worker() -> None:
    # one intra-op thread per process: these networks are too small to gain from more, and on
    # a shared machine torch's spinning worker threads slow every call (tests/proxt2i/conftest.py)
    torch.set_num_threads(1)
    # the same for BLAS under the digit classifier (threadpoolctl: a scikit-learn dependency):
    # its fit took 27 CPU s with OpenBLAS's two threads on the loaded machine, 1.7 s with one
    threadpool_limits(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")


def run(mode: Mode, seeds: Sequence[int], workers: int) -> tuple[list[Measure], float]:
    """Seeds in `workers` processes; returns the measures (in seed order) and the CPU seconds
    the seeds used (what the run costs on an idle machine)."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker) as pool:
        per_seed = list(pool.map(seed_measures, [mode] * len(seeds), seeds))
    return [m for ms, _ in per_seed for m in ms], sum(cpu for _, cpu in per_seed)


def paired_change(measures: list[Measure], metric: str) -> Spread:
    """The tuned minus the starting network's `metric`, per seed (the first method seen is the
    starting one), as mean ± std over seeds: pairing removes the spread between seeds'
    starting networks, which is not GRPO's doing."""
    per_seed: dict[int, dict[str, float]] = defaultdict(dict)
    for m in measures:
        if m.experiment == GRPO_EXPERIMENT and m.metric == metric:
            per_seed[m.seed][m.method] = m.value
    diffs = []
    for values in per_seed.values():
        before, after = values.values()  # insertion order: the starting network first
        diffs.append(after - before)
    return spread(diffs)


def fd_reading(shift: float, allowed: float) -> str:
    """Where the mean FD change lies against the starting FD's seed spread `allowed`."""
    if shift > allowed:
        return "OUTSIDE, higher"
    return "within" if shift >= -allowed else "lower by more than it"


def grpo_verdict(measures: list[Measure]) -> str:
    """Does GRPO raise the held-out reward (its per-seed gain beyond that gain's seed spread)
    while FD stays within the starting FD's seed spread? A fall beyond it is said apart: it is
    a better distribution, not a sign of reward hacking."""
    rows = aggregate(m for m in measures if m.experiment == GRPO_EXPERIMENT)
    allowed = next(iter(rows.values()))["FD"].std  # the starting network's row comes first
    held, train = paired_change(measures, "p(held-out digit)"), paired_change(measures, "p(digit)")
    fd = paired_change(measures, "FD")
    return (
        f"GRPO, per-seed change (mean ± std over seeds): held-out reward {held} "
        f"({'raised' if held.mean > held.std else 'NOT raised'}), training prompts' reward "
        f"{train}; FD {fd} (seed spread of the starting FD {allowed:.2g}: "
        f"{fd_reading(fd.mean, allowed)})"
    )


def report(measures: list[Measure]) -> str:
    """The three markdown tables and the GRPO verdict."""
    parts = []
    for experiment, metrics in (
        ("2-D ring", ("W2", "off_mode", "spread")),
        ("digits", ("FD", "acc", "p(digit)")),
        (GRPO_EXPERIMENT, ("FD", "acc", "p(digit)", "p(held-out digit)")),
    ):
        parts.append(markdown_table([m for m in measures if m.experiment == experiment], metrics))
    return "\n\n".join([*parts, grpo_verdict(measures)])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small budgets (docs/proxt2i.md)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..SEEDS-1 (default 3)")
    # 3: with the default 3 seeds on 2 cores, 2 processes leave one core idle while the third
    # seed runs alone; 3 share both cores to the end
    ap.add_argument("--workers", type=int, default=3, help="processes, one seed each at a time")
    args = ap.parse_args(argv)
    _start_worker()
    load_before, start = os.getloadavg()[0], time.perf_counter()
    workers = min(args.seeds, args.workers)
    measures, cpu = run(QUICK if args.quick else FULL, range(args.seeds), workers)
    print(report(measures))
    print(
        f"\n{'quick' if args.quick else 'full'} mode, {args.seeds} seeds in {workers} "
        f"processes: {time.perf_counter() - start:.0f} s wall, {cpu:.0f} s CPU; "
        f"1-min load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
