"""The offline training job: data, the training loop, export with a parity proof, the model store."""

import os

# MKL may choose how many threads a call gets at run time (MKL_DYNAMIC, on by default). Intel's conditions for
# run-to-run reproducibility ask for it off, and here it mattered: beside other busy processes on the 2 cores, the
# digits MLP at seed 0 took another path (114 epochs against 130, another ONNX file), and with it off it did not
# (README: the loop). MKL reads it once, when torch first calls it, so it is set here, before anything in the job
# imports torch; a user's own MKL_DYNAMIC wins.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
