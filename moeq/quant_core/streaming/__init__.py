"""Layer-streamed quantization and evaluation of checkpoints larger than host or device memory."""
