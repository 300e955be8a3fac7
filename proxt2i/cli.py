"""Argument parsing for `laionface train | sample | evaluate | finetune | record-training`;
handlers call proxt2i.api."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _str_list(text: str) -> list[str]:
    return [s for s in text.split(",") if s]


def _train(args: argparse.Namespace) -> int:
    from proxt2i import api

    print(api.train(args.config, args.set))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from proxt2i import api

    out = api.sample(
        args.ckpt,
        args.prompt,
        args.steps,
        args.sampler,
        args.guidance,
        args.seed,
        args.out,
        args.images_per_prompt,
        args.device,
    )
    print(out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from proxt2i import api
    from proxt2i.rewards import ClipScoreConfig

    clip = None
    if args.clip_checkpoint is not None:
        clip = ClipScoreConfig(
            model_name=args.clip_model,
            checkpoint=args.clip_checkpoint,
            architecture_json=args.clip_architecture,
        )
    out = api.evaluate(
        args.ckpt,
        args.prompts,
        args.steps,
        args.samplers,
        args.out,
        args.reference,
        args.guidance,
        args.seed,
        clip,
        not args.no_face_reward,
        args.n_reference,
        args.images_per_prompt,
        args.device,
    )
    print(out)
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from proxt2i import api

    print(api.finetune(args.ckpt, args.config, args.set))
    return 0


def _record_training(args: argparse.Namespace) -> int:
    from proxt2i.record import add_record

    print(f"{args.ckpt}: trained for {add_record(args.ckpt).describe()}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register the proxt2i subcommands; each sets func=handler(args) -> int."""
    p = subparsers.add_parser("train", help="train ProxT2I from a YAML config")
    p.add_argument("config", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("sample", help="generate images from a checkpoint")
    p.add_argument("ckpt", type=Path)
    p.add_argument("--prompt", action="append", required=True)
    _common_sampling(p)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sampler", default="pda_hybrid")
    p.set_defaults(func=_sample)

    p = subparsers.add_parser("evaluate", help="FID / CLIP / face reward vs steps")
    p.add_argument("ckpt", type=Path)
    p.add_argument("--prompts", type=Path, required=True, help="text file, one prompt per line")
    _common_sampling(p)
    p.add_argument("--steps", type=_int_list, default=[5, 10, 20, 50])
    p.add_argument("--samplers", type=_str_list, default=["pda_hybrid", "score_ode", "score_sde"])
    p.add_argument("--reference", help="reference shards (brace-expandable tar URLs) for FID")
    p.add_argument("--n-reference", type=int, default=1000)
    p.add_argument("--clip-model", default="ViT-B-32")
    p.add_argument("--clip-checkpoint", type=Path)
    p.add_argument("--clip-architecture", type=Path, help="open_clip model config JSON")
    p.add_argument("--no-face-reward", action="store_true")
    p.set_defaults(func=_evaluate)
    _add_checkpoint_commands(subparsers)


def _add_checkpoint_commands(subparsers: argparse._SubParsersAction) -> None:
    """finetune and record-training: commands that write a checkpoint from a checkpoint."""
    p = subparsers.add_parser("finetune", help="GRPO reward fine-tuning of a checkpoint")
    p.add_argument("ckpt", type=Path)
    p.add_argument("config", type=Path, help="fine-tuning YAML (docs/proxt2i.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_finetune)

    p = subparsers.add_parser(
        "record-training",
        help="write what an old checkpoint was trained for, from its config.yaml",
    )
    p.add_argument("ckpt", type=Path)
    p.set_defaults(func=_record_training)


def _common_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--images-per-prompt", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
