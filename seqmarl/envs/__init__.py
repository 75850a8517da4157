"""Text environments: tasks, the sequential AEC env, the registry and the conformance checks.

>>> from seqmarl import envs
>>> env = envs.make("arithmetic-v0", num_agents=2)
>>> env.reset(seed=0)
>>> env.agent_selection
'llm_0'
"""

from seqmarl.envs.dataset import DatasetTask, load_records
from seqmarl.envs.game import AECGame, GameResult, TaskGame, TextGame
from seqmarl.envs.registration import (
    ENVS,
    EnvSpec,
    build_game,
    make,
    register_env,
    register_pettingzoo,
)
from seqmarl.envs.sequential import SequentialTextEnv
from seqmarl.envs.spaces import AnyText
from seqmarl.envs.task import FormatTemplate, Prompt, TextTask, as_generator
from seqmarl.envs.tasks import ArithmeticTask, GSM8KTask, IMDBTask, SentimentTask
from seqmarl.envs.tasks.debate import GSM8KDebateTask
from seqmarl.envs.tasks.duel import DuelTask, make_imdb_duel, make_sentiment_duel
from seqmarl.envs.tasks.guess import NumberGuessTask
from seqmarl.envs.testing import CheckReport, check_env
from seqmarl.envs.wrappers import TextAECWrapper, wrap

register_env("arithmetic-v0", ArithmeticTask)
register_env("sentiment-v0", SentimentTask)
register_env("imdb-sentiment-v0", IMDBTask)
register_env("gsm8k-v0", GSM8KTask)
register_env("gsm8k-debate-v0", GSM8KDebateTask)
register_env("imdb-duel-v0", make_imdb_duel)
register_env("sentiment-duel-v0", make_sentiment_duel)


def _textarena(env_id: str) -> EnvSpec:
    from seqmarl.envs.suites.textarena import resolve  # the games extra, on first use

    return resolve(env_id)


def _openspiel(env_id: str) -> EnvSpec:
    from seqmarl.envs.suites.openspiel import resolve  # the games extra, on first use

    return resolve(env_id)


ENVS.add_namespace("textarena", _textarena, pattern="textarena/<TextArena id>")
ENVS.add_namespace("openspiel", _openspiel, pattern="openspiel/<game>-v0")
register_env(
    "number-guess-v0",
    NumberGuessTask,
    description="Guess a hidden number in turns; an illegal move is penalised, the first hit wins.",
)

__all__ = [
    "ENVS",
    "AECGame",
    "AnyText",
    "ArithmeticTask",
    "CheckReport",
    "DatasetTask",
    "DuelTask",
    "EnvSpec",
    "FormatTemplate",
    "GSM8KDebateTask",
    "GSM8KTask",
    "GameResult",
    "IMDBTask",
    "NumberGuessTask",
    "Prompt",
    "SentimentTask",
    "SequentialTextEnv",
    "TaskGame",
    "TextAECWrapper",
    "TextGame",
    "TextTask",
    "as_generator",
    "build_game",
    "check_env",
    "load_records",
    "make",
    "register_env",
    "register_pettingzoo",
    "wrap",
]
