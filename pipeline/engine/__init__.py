"""The processing engine: decode, stages, the double-buffered scheduler, queues, render, probability.bin."""
