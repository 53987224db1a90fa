"""The ``vessel-seg`` command line and its tools: run, segment, bench, evaluate, doctor, bin2png, ..."""
