"""`samroto bench image`: image-encoder and decoder time per image (random weights unless --model)."""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="sam2.1_hiera_tiny", help="preset name (random weights)")
    parser.add_argument("--model", help="checkpoint path or name instead of random weights")
    parser.add_argument("--image-size", type=int, default=None, help="input resolution (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="autocast precision on CUDA (float32: no autocast)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the image encoder")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=20, help="decoder runs per image")


def run(args: argparse.Namespace) -> int:
    import torch

    from samroto.core.image_predictor import ImagePredictor
    from samroto.core.model.runtime import autocast_context
    from samroto.scripts.common import bench_model

    device = torch.device(args.device)
    model = bench_model(args, memory_attention=False)
    predictor = ImagePredictor(model)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    encode_times, decode_times = [], []
    with autocast_context(device, args.precision):
        predictor.set_image(image)  # warm-up (and compilation)
        predictor.predict(points=[[640, 360]], labels=[1])
        sync()
        for _ in range(args.runs):
            t0 = time.perf_counter()
            predictor.set_image(image)
            sync()
            encode_times.append(time.perf_counter() - t0)
            for i in range(args.clicks):
                t0 = time.perf_counter()
                predictor.predict(points=[[100 + 40 * i, 360]], labels=[1])
                sync()
                decode_times.append(time.perf_counter() - t0)

    print(f"model: {args.model or args.config + ' (random weights)'} at {model.image_size}, device {device}, "
          f"precision {args.precision}, torch threads {torch.get_num_threads()}, compile {args.compile}")
    print(f"image encoder: median {statistics.median(encode_times) * 1000:.1f} ms/image "
          f"(min {min(encode_times) * 1000:.1f}, {len(encode_times)} runs)")
    print(f"prompt encoder + mask decoder + upsampling to 1280x720: median "
          f"{statistics.median(decode_times) * 1000:.1f} ms/click (min {min(decode_times) * 1000:.1f}, "
          f"{len(decode_times)} runs)")
    return 0
