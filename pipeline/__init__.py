"""The pipeline: everything between a file in the capture folder and a finished result.

Sub-packages, one job each (imports point down this list, never up, except ``cli``, which drives them all):

* ``appliance``: the appliance process and its wiring: the daemon, its policies (data-directory lock,
  intake and dedupe, recovery, uploads, health and status, reload), the configuration, systemd notify;
* ``engine``: the processing engine: decode, stages, the double-buffered scheduler, queues, render,
  the probability.bin format, metrics;
* ``store``: what lasts on disk: the SQLite journal, the result store, quarantine, atomic writes;
* ``shared``: what training shares with the appliance: preprocessing, dataset pairing, scoring;
* ``cli``: the ``vessel-seg`` command line and its tools (run, segment, bench, evaluate, doctor);
* ``proving``: the proving ground (``vessel-seg stress``), whose harness the tests reuse.

Kept import-light on purpose: ``vessel-seg --help`` must not pull in numpy, OpenCV or Flask.
"""
