"""The offline training job: data, the training loop, export with a parity proof, the model store."""
