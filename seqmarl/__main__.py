"""``python -m seqmarl`` and the ``seqmarl`` script: the same command line.

Also what ``torchrun -m seqmarl`` launches. :func:`run` imports the command line inside a
``try`` block, so a Ctrl-C while Python loads it is one line and exit status 130, not a
traceback; the libraries themselves (torch, transformers) load inside the command's own
``try`` block (:func:`seqmarl.cli.main`).
"""

import sys


def run() -> int:
    """Entry point of the ``seqmarl`` script; returns the exit status."""
    try:
        from seqmarl.cli import main
    except KeyboardInterrupt:
        # the same line as seqmarl.cli.STOPPED_STARTING, which is not importable here
        print("seqmarl: SIGINT: stopped while starting; nothing was run", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
