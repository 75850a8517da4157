"""Algorithms: pure advantage and loss functions over rollout tensors, one per file.

Registered: ``ppo``, ``reinforce``, ``rloo``, ``grpo``. Add one with
``ALGORITHMS.register("name", Algorithm(...))`` or refer to ``"pkg.module:ALGO"`` in a config.
"""

from seqmarl.algos.base import ALGORITHMS, AlgoConfig, Algorithm, AlgoState
from seqmarl.algos.grpo import GRPO, GRPOConfig
from seqmarl.algos.ppo import PPO, PPOConfig
from seqmarl.algos.reinforce import REINFORCE, ReinforceConfig
from seqmarl.algos.rloo import RLOO, RLOOConfig

for _algo in (PPO, REINFORCE, RLOO, GRPO):
    ALGORITHMS.register(_algo.name, _algo)

__all__ = [
    "ALGORITHMS",
    "GRPO",
    "PPO",
    "REINFORCE",
    "RLOO",
    "AlgoConfig",
    "AlgoState",
    "Algorithm",
    "GRPOConfig",
    "PPOConfig",
    "RLOOConfig",
    "ReinforceConfig",
]
