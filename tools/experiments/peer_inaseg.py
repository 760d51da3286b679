"""Run inaSpeechSegmenter 0.6.8 (the peer of issue 13) on the synthetic segmentation set.

It is not a dependency of mgctag: run it with the Python of a scratch virtualenv that holds it
(`python -m venv /tmp/ina && /tmp/ina/bin/pip install inaSpeechSegmenter==0.6.8 tf-keras`,
tf-keras at the installed TensorFlow's version), on the WAV
files that `python -m tools.experiments.eval_segmenter --dump DIR` wrote (16 kHz mono, the same
files every method is scored on), then score its intervals with
`python -m tools.experiments.eval_segmenter --peer OUT.json`:

    /tmp/ina/bin/python -m tools.experiments.peer_inaseg DIR OUT.json

Its speech / music / noise CNN ('smn' engine, gender detection off) reads the WAV files
directly; the ffmpeg step of its command-line tool only converts media to such files, so it is
skipped. CPU time is one thread (TensorFlow's intra/inter-op pools set to 1), features included.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # its Keras 2 .hdf5 models: needs tf-keras


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("folder", type=Path, help="the WAV files `eval_segmenter --dump DIR` wrote")
    ap.add_argument("out", type=Path, help="where its intervals go (JSON)")
    args = ap.parse_args()
    import numpy as np
    import soundfile as sf
    import tensorflow as tf

    # its MFCC code (2019) calls NumPy names that NumPy 2 removed; TensorFlow needs NumPy 2
    if not hasattr(np.lib, "pad"):
        np.lib.pad = np.pad  # type: ignore[attr-defined]
    for alias, builtin in (("int", int), ("float", float), ("bool", bool)):
        if alias not in np.__dict__:
            setattr(np, alias, builtin)
    vstack = np.vstack  # pyannote.algorithms 0.8's Viterbi passes it a generator

    def vstack_any(arrays: Any, *args: Any, **kwargs: Any) -> Any:
        return vstack(list(arrays), *args, **kwargs)

    np.vstack = vstack_any  # type: ignore[assignment]

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from inaSpeechSegmenter import Segmenter
    from inaSpeechSegmenter.features import _wav2feats

    folder, out = args.folder, args.out
    seg = Segmenter(vad_engine="smn", detect_gender=False, ffmpeg="true", batch_size=256)
    result: dict = {"_params": int(seg.vad.nn.count_params())}
    cpu = seconds = 0.0
    files = sorted(folder.glob("*.wav"))
    for i, wav in enumerate(files):
        t0 = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mspec, loge, difflen = _wav2feats(str(wav))
            intervals = seg.segment_feats(mspec, loge, difflen, 0)
        cpu += time.process_time() - t0
        seconds += sf.info(wav).duration
        result[wav.stem] = [[lab, float(a), float(b)] for lab, a, b in intervals]
        if i % 50 == 0:
            print(f"{i}/{len(files)}", flush=True)
    result["_cpu_s_per_min"] = cpu / seconds * 60
    out.write_text(json.dumps(result))
    cpu_min = result["_cpu_s_per_min"]
    print(f"{len(files)} files, {seconds / 60:.1f} min, {cpu_min:.3f} s CPU per min")


if __name__ == "__main__":
    main()
