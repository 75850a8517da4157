"""Game suites: whole families of existing games as registered envs, resolved on first use.

* ``textarena/<Game>`` — any TextArena game with two or more players
  (:mod:`seqmarl.envs.suites.textarena`), e.g. ``textarena/TicTacToe-v0``,
  ``textarena/KuhnPoker-v0-short``;
* ``openspiel/<game>-v0`` — an OpenSpiel game through Shimmy
  (:mod:`seqmarl.envs.suites.openspiel`), e.g. ``openspiel/tic_tac_toe-v0``.

Both ship as the optional extra ``seqmarl[games]``; asking for one without it is one line
naming the extra. Each suite's env is a PettingZoo ``AECEnv`` with text observations, played
like any env registered with :func:`~seqmarl.envs.register_pettingzoo`: the reward matrix and
role exchange apply on top of the game's own rewards.
"""

from __future__ import annotations

import importlib
from typing import Any

from seqmarl.errors import ConfigError

__all__ = ["EXTRA", "require"]

#: The pip extra that installs the suites' packages.
EXTRA = "games"


def require(module: str, package: str) -> Any:
    """Import ``module`` of an optional suite, or raise one line naming the extra.

    Raises:
        ConfigError: The package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{package} is not installed ({exc}); install the extra: pip install "
            f"'seqmarl[{EXTRA}]' (or pip install -c constraints.txt -e '.[{EXTRA}]' in a checkout)"
        ) from None
