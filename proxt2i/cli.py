"""Argument parsing for `laionface train | sample | evaluate | finetune | record-training`;
handlers call proxt2i.api."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxt2i.evaluate_config import EvalConfig


def _comma_list(parse: Callable[[str], Any], what: str) -> Callable[[str], list[Any]]:
    """An argparse `type` for `a,b,c`: each item through `parse`; `what` names them in errors."""

    def convert(text: str) -> list[Any]:
        try:
            return [parse(s) for s in text.split(",") if s]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r}"
            ) from None

    return convert


_int_list = _comma_list(int, "integers")
_float_list = _comma_list(float, "numbers")
_str_list = _comma_list(str, "names")


def _train(args: argparse.Namespace) -> int:
    from proxt2i import api

    print(api.train(args.config, args.set))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from proxt2i import api

    request = api.SampleRequest(
        ckpt=args.ckpt,
        prompts=tuple(args.prompt),
        out=args.out,
        steps=args.steps,
        sampler=args.sampler,
        guidance=args.guidance,
        seed=args.seed,
        images_per_prompt=args.images_per_prompt,
        device=args.device,
    )
    print(api.sample(request))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from proxt2i import api
    from proxt2i.report import format_table

    cfg = eval_config(args)
    out = api.evaluate(args.ckpt, cfg)
    print(format_table(json.loads(out.read_text())["results"]))
    print(out)
    return 0


class _Given(argparse.Action):
    """Store the value and note the flag as given: given flags override --config's keys."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


# evaluate flag -> dotted key of EvalConfig (proxt2i/evaluate_config.py)
EVAL_FLAGS = {
    "out": "out_dir",
    "prompts": "prompts",
    "steps": "steps",
    "samplers": "samplers",
    "guidance": "guidance",
    "seed": "seed",
    "images_per_prompt": "images_per_prompt",
    "device": "device",
    "reference": "reference.shards",
    "n_reference": "reference.count",
    "samples": "samples",
    "batch_size": "batch_size",
    "kid_subsets": "kid.subsets",
    "kid_subset_size": "kid.subset_size",
    "grid_images": "grid_images",
}


def eval_config(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig of `evaluate`'s arguments: the --config file's keys, then the flags (every
    flag without --config, only the given ones with it), then --set; validated in one line."""
    from manifests.overrides import apply_overrides
    from proxt2i.config import read_tree, validate_as
    from proxt2i.evaluate_config import EvalConfig

    tree = read_tree(args.config) if args.config else {}
    given: set[str] = getattr(args, "given", set())
    for flag, key in EVAL_FLAGS.items():
        value = getattr(args, flag)
        if value is None or (args.config and flag not in given):
            continue  # the file's key, or the model's default
        if flag == "n_reference" and not (args.reference or tree.get("reference")):
            continue  # a count without reference shards counts nothing
        _put(tree, key, [value] if flag == "guidance" and not isinstance(value, list) else value)
    if args.clip_checkpoint is not None:
        arch = args.clip_architecture
        tree["clip"] = {
            "model_name": args.clip_model,
            "checkpoint": str(args.clip_checkpoint),
            "architecture_json": str(arch) if arch else None,
        }
    if args.no_face_reward:
        tree["face_reward"] = False
    tree = apply_overrides(tree, args.set)
    return validate_as(EvalConfig, tree, str(args.config or "the command line"))


def _put(tree: dict[str, Any], key: str, value: Any) -> None:
    """tree[a][b] = value for key "a.b" (paths as strings, as YAML would hold them)."""
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = str(value) if isinstance(value, Path) else value


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

    _add_evaluate_command(subparsers)
    _add_checkpoint_commands(subparsers)


def _add_evaluate_command(subparsers: argparse._SubParsersAction) -> None:
    """evaluate: an EvalConfig from --config and/or flags (the flags of earlier versions stay)."""
    p = subparsers.add_parser("evaluate", help="FID / KID / CLIP / face reward per row")
    p.add_argument("ckpt", type=Path)
    p.add_argument("--config", type=Path, help="evaluation YAML (docs/proxt2i.md)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    def flag(name: str, **kw: Any) -> None:
        p.add_argument(name, action=_Given, **kw)

    flag("--prompts", type=Path, help="text file, one prompt per line (default: the captions)")
    flag("--steps", type=_int_list, default=[5, 10, 20, 50])
    flag("--samplers", type=_str_list, default=["pda_hybrid", "score_ode", "score_sde"])
    flag("--guidance", type=_float_list, default=1.0, help="CFG weights, e.g. 1,2,4 (a sweep)")
    flag("--seed", type=int, default=0)
    flag("--out", type=Path)
    flag("--images-per-prompt", type=int, default=1)
    flag("--device", default=None, help="cpu or cuda (default: cuda when available)")
    flag("--reference", help="held-out shards (brace-expandable tar URLs): FID/KID, prompts")
    flag("--n-reference", type=int, default=1000, help="reference images read")
    flag("--samples", type=int, help="images per row (default: one per prompt)")
    flag("--batch-size", type=int, default=64, help="images per generation chunk")
    flag("--kid-subsets", type=int, default=100)
    flag("--kid-subset-size", type=int, default=1000)
    flag("--grid-images", type=int, default=64)
    p.add_argument("--clip-model", default="ViT-B-32")
    p.add_argument("--clip-checkpoint", type=Path)
    p.add_argument("--clip-architecture", type=Path, help="open_clip model config JSON")
    p.add_argument("--no-face-reward", action="store_true")
    p.set_defaults(func=_evaluate)


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
