"""``check_env``: PettingZoo's conformance tests plus text-specific checks, shipped to users.

Run it on any env you build (``seqmarl check-env my-task-v0 --num-agents 3`` does the same from
the shell). It runs

* ``pettingzoo.test.api_test`` and ``pettingzoo.test.seed_test`` with random string actions;
* any-text actions: empty, whitespace, punctuation, unicode, emoji and long strings are
  accepted and every observation stays in its space;
* seat order: ``reset(options={"seat_order": ...})`` is followed turn by turn;
* knowledge transfer: seat k's observation changes with earlier responses exactly when
  transfer is on, and the first seat's never does;
* reward mixing: final rewards equal ``C @ task_rewards``;
* determinism: the same seed gives the same prompt.

A plain PettingZoo env registered with :func:`~seqmarl.envs.register_pettingzoo` (its face a
:class:`~seqmarl.envs.wrappers.TextAECWrapper`) gets what applies to it: ``api_test`` on the
env itself and on its face in seqmarl's agent names, and a play of the trainer's own path
(:class:`~seqmarl.envs.game.AECGame`) with adversarial texts in both seat orders, whose rows
must end (or be cut at the turn bound) with finite rewards.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from pettingzoo.test import api_test, seed_test

from seqmarl.envs.game import seed_prompts
from seqmarl.envs.sequential import SequentialTextEnv
from seqmarl.envs.wrappers import TextAECWrapper
from seqmarl.errors import EnvCheckError

__all__ = ["ADVERSARIAL_TEXTS", "CheckReport", "CheckResult", "check_env"]

ADVERSARIAL_TEXTS = (
    "",
    " ",
    "\n\t  \r\n",
    "42",
    "!!?,.;:'\"()[]{}<>/\\|@#$%^&*-_=+`~",
    "café naïve façade Ωμέγα 中文 日本語 한국어",
    "🙂🚀👍🏽 mixed ✓",
    "\x00\x1b[31mcontrol\u200b\ufeff",
    "word " * 2000,
)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class CheckReport:
    """All check results for one env."""

    env_id: str
    num_agents: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(r.passed for r in self.results)

    def __str__(self) -> str:
        lines = [f"check_env {self.env_id} (N={self.num_agents})"]
        for r in self.results:
            mark = "PASS" if r.passed else "FAIL"
            lines.append(f"  [{mark}] {r.name}" + (f": {r.detail}" if r.detail else ""))
        verdict = "all checks passed" if self.passed else "SOME CHECKS FAILED"
        lines.append(f"  {sum(r.passed for r in self.results)}/{len(self.results)}: {verdict}")
        return "\n".join(lines)


def check_env(
    env: SequentialTextEnv | Callable[[], SequentialTextEnv],
    *,
    num_cycles: int = 20,
    raise_on_failure: bool = True,
) -> CheckReport:
    """Run every conformance check on an env.

    Args:
        env: An env, or a zero-argument factory returning a fresh one.
        num_cycles: Cycles for PettingZoo's api/seed tests.
        raise_on_failure: Raise :class:`EnvCheckError` (with the report) if a check fails.

    Returns:
        The report; ``report.passed`` tells whether all checks passed.
    """
    faces = (SequentialTextEnv, TextAECWrapper)
    factory = env if callable(env) and not isinstance(env, faces) else env.clone
    probe = factory()
    report = CheckReport(env_id=probe.metadata["name"], num_agents=probe.max_num_agents)
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("pettingzoo api_test", lambda: _quiet(lambda: api_test(factory(), num_cycles))),
        ("pettingzoo seed_test", lambda: _quiet(lambda: seed_test(factory, num_cycles))),
        ("any text is a valid action", lambda: _check_any_text(factory())),
        ("seat order from reset options", lambda: _check_seat_order(factory())),
        ("knowledge transfer", lambda: _check_transfer(factory)),
        ("rewards = C @ task rewards", lambda: _check_reward_mixing(factory())),
        ("prompts deterministic under a seed", lambda: _check_seeded_prompts(factory)),
    ]
    if isinstance(probe, TextAECWrapper):
        face = lambda: _quiet(lambda: api_test(factory(), num_cycles))  # noqa: E731
        checks = [
            ("pettingzoo api_test (the env)", lambda: _env_api_test(probe._fn, num_cycles)),
            ("pettingzoo api_test (seqmarl's face)", face),
            ("the trainer's game: any text, both seat orders", lambda: _check_game(probe)),
        ]
    for name, fn in checks:
        try:
            detail = fn() or ""
            report.results.append(CheckResult(name, True, detail))
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" ({tb.filename.rsplit('/', 1)[-1]}:{tb.lineno})"
            report.results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}{where}"))
    if raise_on_failure and not report.passed:
        raise EnvCheckError(str(report))
    return report


def _quiet(fn: Callable[[], object]) -> None:
    """Run a PettingZoo test without its prints and its Box/Discrete advice warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*probably should be gymnasium.spaces.box")
        warnings.filterwarnings("ignore", message=".*has not defined a render")
        warnings.filterwarnings("ignore", message="We recommend agents to be named")
        warnings.filterwarnings("ignore", message="Observation is not a NumPy array")
        fn()


def _play(env: SequentialTextEnv, actions: Iterator[str]) -> list[tuple[str, dict]]:
    """Play one episode; return (agent, observation) for each live turn."""
    seen = []
    for agent in env.agent_iter():
        obs, _, term, trunc, _ = env.last()
        if term or trunc:
            env.step(None)
            continue
        assert env.observation_space(agent).contains(obs), f"observation out of space: {obs!r}"
        seen.append((agent, obs))
        env.step(next(actions))
    return seen


def _check_any_text(env: SequentialTextEnv) -> str:
    texts = itertools.cycle(ADVERSARIAL_TEXTS)  # an episode takes N x rounds of them
    episodes = 0
    for i in range(0, len(ADVERSARIAL_TEXTS), env.max_num_agents):
        env.reset(seed=i)
        _play(env, texts)
        for a in env.possible_agents:
            assert np.isfinite(env.task_rewards[a]), f"non-finite task reward for {a}"
        episodes += 1
    return f"{len(ADVERSARIAL_TEXTS)} texts over {episodes} episodes"


def _check_seat_order(env: SequentialTextEnv) -> str:
    order = list(reversed(env.possible_agents))
    env.reset(seed=0, options={"seat_order": order})
    rounds = getattr(env, "rounds", 1)
    played = [a for a, _ in _play(env, iter(["x"] * len(order) * rounds))]
    assert played == order * rounds, f"played {played}, asked for {order} x {rounds} rounds"
    return ""


def _check_transfer(factory: Callable[[], SequentialTextEnv]) -> str:
    def observations(first_response: str) -> list[str]:
        env = factory()
        env.reset(seed=0)
        turns = env.max_num_agents * getattr(env, "rounds", 1)
        played = _play(env, iter([first_response] + ["y"] * (turns - 1)))
        return [obs["text"] for _, obs in played]

    a, b = observations("first answer 111"), observations("other answer 222")
    assert a[0] == b[0], "the first seat's observation depends on a response"
    transfer = factory().knowledge_transfer
    # the seats of round 0 (in later rounds an agent also sees its own earlier answers)
    for k in range(1, factory().max_num_agents):
        if transfer:
            assert a[k] != b[k], f"seat {k} does not see the earlier response (transfer is on)"
        else:
            assert a[k] == b[k], f"seat {k} sees an earlier response (transfer is off)"
    return f"transfer {'on' if transfer else 'off'}"


def _check_reward_mixing(env: SequentialTextEnv) -> str:
    env.reset(seed=1)
    _play(env, iter([f"answer {i}" for i in range(env.max_num_agents * env.rounds)]))
    r = np.array([env.task_rewards[a] for a in env.possible_agents])
    mixing = getattr(env, "mixing", env.coef)  # C, or C masked by seat under causal credit
    expected = mixing @ r  # (N, N) @ (N,)
    got = np.array([env.trained_rewards[a] for a in env.possible_agents])
    assert np.allclose(got, expected), f"rewards {got} != C @ r = {expected}"
    return ""


def _env_api_test(env_fn: Callable[[], object], num_cycles: int) -> str:
    probe = env_fn()
    probe.reset(seed=0)
    if isinstance(probe.observe(probe.agent_selection), str):  # trainable, but api_test fails
        return (
            "not run: the env's observations are bare strings, which PettingZoo's api_test "
            "rejects (a str has no dtype); its face below serves them as {'text': str}"
        )
    _quiet(lambda: api_test(env_fn(), num_cycles))
    return ""


def _check_game(face: TextAECWrapper) -> str:
    game = face.as_game()
    texts = itertools.cycle(ADVERSARIAL_TEXTS)
    prompts = seed_prompts(2, 0)
    turns = cut = 0
    for seats in (game.possible_agents, tuple(reversed(game.possible_agents))):
        game.reset(prompts, seats, copies=2)
        while waiting := game.waiting():
            for agent, rows in waiting.items():
                obs = game.observe(agent, rows)
                assert all(isinstance(o, str) for o in obs), "an observation is not text"
                game.act(agent, rows, [next(texts) for _ in rows])
                turns += len(rows)
        result = game.result()
        assert np.isfinite(result.outcome).all(), f"non-finite rewards {result.outcome}"
        cut += int(result.truncated.sum())
    return f"{turns} turns over 8 episodes, {cut} cut at max_turns={game.max_turns}"


def _check_seeded_prompts(factory: Callable[[], SequentialTextEnv]) -> str:
    env1, env2 = factory(), factory()
    firsts = []
    for env in (env1, env2):
        env.reset(seed=123)
        firsts.append(env.prompt)
    assert firsts[0] == firsts[1], "same seed gave different prompts"
    return ""
