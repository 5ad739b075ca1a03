"""Check diffgym's FID Inception-v3 against torch-fidelity's implementation, feature for feature.

torch-fidelity cannot be installed beside this project (its package ``__init__`` imports
torchvision), so this script loads only its Inception module and TF1 resize from an unpacked copy
of the package, never running that ``__init__``:

    pip download --no-deps torch-fidelity==0.4.0 -d /tmp/tf && unzip -q -o /tmp/tf/*.whl -d /tmp/tf
    python benchmarks/scripts/fid_reference_check.py --torch-fidelity /tmp/tf/torch_fidelity \\
        --out benchmarks/results/fid_reference_check.json

Both networks get the same weights — random ones, saved in the format of the real weights file,
with batch-norm statistics perturbed so that no layer is the identity — and the same uint8
images of several sizes; the script reports the largest absolute differences of the 299×299
resize and of the 2048 pool features, and the seconds per image of diffgym's forward pass (one
torch thread). No real Inception weights are needed or downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from diffgym.benchmarks.fid import InceptionFeatures, load_inception, resize_bilinear_tf1
from diffgym.envs.io import atomic_write_json

SIZES = (8, 32, 64, 300)


def _reference_modules(src: Path):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` and TF1 resize, loaded from ``src``."""
    if not (src / "feature_extractor_inceptionv3.py").is_file():
        raise FileNotFoundError(
            f"{src} is not an unpacked torch_fidelity package folder "
            "(no feature_extractor_inceptionv3.py in it)"
        )
    # An empty package object whose __path__ is the folder: submodules import, __init__ does not.
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = [str(src)]
    sys.modules["torch_fidelity"] = pkg
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    return FeatureExtractorInceptionV3, interpolate_bilinear_2d_like_tensorflow1x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--torch-fidelity", type=Path, required=True,
                   help="an unpacked torch_fidelity package folder (0.4.0 was checked)")
    p.add_argument("--images", type=int, default=4, help="images per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    reference_cls, reference_resize = _reference_modules(args.torch_fidelity)
    gen = torch.Generator().manual_seed(args.seed)

    state = InceptionFeatures().state_dict()
    for name, t in state.items():
        if t.is_floating_point():  # O(1) weights, non-trivial batch-norm statistics
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                state[name] = 0.5 + noise.abs()
            elif name.endswith("bn.weight"):
                state[name] = 1.0 + 0.1 * noise
            elif name.endswith("conv.weight"):
                fan_in = t[0].numel()
                state[name] = noise * (2.0 / fan_in) ** 0.5
            else:
                state[name] = 0.1 * noise
    report: dict = {"torch_fidelity_src": str(args.torch_fidelity), "seed": args.seed, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pt_inception-random.pth"
        torch.save(state, path)
        ours = load_inception(path)
        theirs = reference_cls("inception-v3-compat", ["2048"],
                               feature_extractor_weights_path=str(path))
        for size in SIZES:
            imgs = torch.randint(0, 256, (args.images, 3, size, size), generator=gen,
                                 dtype=torch.uint8)
            x = imgs.float()
            resize_diff = (resize_bilinear_tf1(x, 299)
                           - reference_resize(x, size=(299, 299), align_corners=False)).abs().max()
            with torch.no_grad():
                f_ref = theirs(imgs)[0]
                t0 = time.perf_counter()
                f_ours = ours(imgs)
                seconds = time.perf_counter() - t0
            report["sizes"][str(size)] = {
                "resize_max_abs_diff": float(resize_diff),
                "features_max_abs_diff": float((f_ours - f_ref).abs().max()),
                "features_max_abs": float(f_ref.abs().max()),
                "seconds_per_image_ours": seconds / args.images,  # one torch thread
            }
    print(json.dumps(report, indent=2))
    if args.out is not None:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
