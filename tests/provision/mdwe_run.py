"""Run a Python module with W+X memory forbidden, as systemd's MemoryDenyWriteExecute=yes does.

Usage: python mdwe_run.py MODULE [ARGS...]  or  python mdwe_run.py -c CODE.
Uses prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux >= 6.3); exits with status 77 when the
kernel does not support it.
"""
from __future__ import annotations

import ctypes
import mmap
import runpy
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
UNSUPPORTED = 77


def forbid_write_execute() -> bool:
    """Apply MDWE to this process; False when the kernel lacks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        return False
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return True
    return False


def main() -> None:
    if len(sys.argv) < 2 or (sys.argv[1] == "-c" and len(sys.argv) < 3):
        sys.exit("usage: mdwe_run.py MODULE [ARGS...] | mdwe_run.py -c CODE")
    if not forbid_write_execute():
        sys.stderr.write("PR_SET_MDWE not supported by this kernel\n")
        sys.exit(UNSUPPORTED)
    if sys.argv[1] == "-c":
        code = sys.argv[2]
        sys.argv = ["-c"] + sys.argv[3:]
        exec(compile(code, "<mdwe -c>", "exec"), {"__name__": "__main__"})
        return
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
