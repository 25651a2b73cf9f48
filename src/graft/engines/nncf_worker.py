"""NNCF int8 quantization of an OpenVINO model, run in a child process.

NNCF hooks into PyTorch when it quantizes (it imports ``nncf.torch``, whose function hooks stay
installed in the process), and a process that then trains with PyTorch and forks crashed in
graft's test suite. Quantizing in a child process keeps graft's own process free of NNCF: the
model and the calibration pixels go to a temporary folder, the child writes the quantized
model there, the parent reads it back.

    python -m graft.engines.nncf_worker MODEL.xml CALIBRATION.npy OUT.xml
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    """Quantize ``argv[0]`` (IR) with the calibration pixels ``argv[1]`` into ``argv[2]``."""
    source, pixels_file, target = argv
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf
    import numpy as np
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    calibration = np.load(pixels_file)
    model = ov.Core().read_model(source)
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    quantized = nncf.quantize(
        model,
        dataset,
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.PERFORMANCE,
    )
    ov.save_model(quantized, target, compress_to_fp16=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
