"""``python -m seqmarl``: the same command line as the ``seqmarl`` script.

Also what ``torchrun -m seqmarl`` launches.
"""

import sys

from seqmarl.cli import main

sys.exit(main())
