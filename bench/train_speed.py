"""ProxT2I training speed: eager fp32 (baseline) vs bf16 + torch.compile, one run, one GPU.

Same model, same synthetic batches, same number of steps; the time of each step is read off
the batch iterator (the interval between two batches drawn), and the median after a warm-up
(which absorbs compilation) is reported. Latent space through a random AutoencoderKL and a
tiny random text tower, both built locally, so nothing is downloaded. Prints steps/s,
images/s and the ratio.

    python bench/train_speed.py --resolution 256 --batch 32 --steps 40 --warmup 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import yaml

from proxt2i.config import load_config
from proxt2i.train import run_training

GPU_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "proxt2i-gpu.yaml"


def tiny_text_tower(path: Path) -> Path:
    """A 2-layer random BERT with a small WordPiece vocabulary, saved for HfTextEncoder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "person", "face"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(vocab_size=len(words), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128)  # fmt: skip
    BertModel(config).save_pretrained(path)
    return path


def random_vae(path: Path) -> Path:
    """An SD-shaped AutoencoderKL (8x down, 4 latent channels) with random weights."""
    from diffusers import AutoencoderKL

    AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(64, 128, 256, 256),
        latent_channels=4,
        layers_per_block=1,
    ).save_pretrained(path)
    return path


class TimedBatches:
    """Endless random batches; records when each one was drawn."""

    def __init__(self, batch: int, resolution: int) -> None:
        self.images = torch.rand(batch, 3, resolution, resolution) * 2 - 1
        self.captions = ["a photo of a person"] * batch
        self.times: list[float] = []

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, list[str]]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        return self.images, self.captions


def step_seconds(work: Path, args: argparse.Namespace, precision: str, compile_: bool) -> float:
    tree = yaml.safe_load(GPU_CONFIG.read_text())
    tree.update(out_dir=str(work / f"{precision}-{compile_}"), steps=args.warmup + args.steps,
                save_every=10**9, log_every=10**9, mixed_precision=precision, compile=compile_,
                vae_path=str(work / "vae"))  # fmt: skip
    tree["text_encoder"] = {"type": "hf_text", "path": str(work / "text")}
    tree["data"].update(resolution=args.resolution, batch_size=args.batch, num_workers=0)
    tree["objectives"] = tree["objectives"][:1]  # the proximal network only
    config_path = work / f"{precision}-{compile_}.yaml"
    config_path.write_text(yaml.safe_dump(tree))
    batches = TimedBatches(args.batch, args.resolution)
    run_training(load_config(config_path), iter(batches))
    gaps = [b - a for a, b in zip(batches.times, batches.times[1:], strict=False)]
    return statistics.median(gaps[args.warmup :])


MODES = {"eager": ("no", False), "fast": ("bf16", True)}


def run_mode(args: argparse.Namespace) -> float:
    """Seconds per step of one mode; each mode runs in its own process (accelerate keeps one
    mixed-precision state per process)."""
    work = Path(tempfile.mkdtemp(prefix="train-speed-"))
    tiny_text_tower(work / "text")
    random_vae(work / "vae")
    precision, compile_ = MODES[args.mode]
    return step_seconds(work, args, precision, compile_)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--mode", choices=sorted(MODES), default=None, help="internal")
    args = parser.parse_args()
    if args.mode is not None:
        print(f"seconds_per_step={run_mode(args)}")
        return
    seconds = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, *sys.argv[1:]]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        seconds[mode] = float(out.rsplit("seconds_per_step=", 1)[1].split()[0])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    base, fast = seconds["eager"], seconds["fast"]
    print(f"device={device} resolution={args.resolution} batch={args.batch} steps={args.steps}")
    print(f"fp32 eager:      {1 / base:6.2f} steps/s  {args.batch / base:7.1f} img/s")
    print(f"bf16 + compile:  {1 / fast:6.2f} steps/s  {args.batch / fast:7.1f} img/s")
    print(f"ratio bf16+compile / fp32 eager: {base / fast:.2f}")


if __name__ == "__main__":
    main()
