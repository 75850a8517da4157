"""Checked calls into a task: a task's fault becomes one :class:`TaskError` line.

A task is user code, and its faults used to surface far from their cause: a NaN reward as a
NaN loss, an empty prompt as a shape error deep inside the model, a wrong number of rewards as
a reshape error. The game of a task (:class:`~seqmarl.envs.game.TaskGame`, which the rollout
and :class:`~seqmarl.envs.sequential.SequentialTextEnv` play) and
:class:`~seqmarl.envs.dataset.DatasetTask` call the task through these functions instead,
which check what comes back and raise a :class:`~seqmarl.errors.TaskError` naming the env id
and task class, the row, the prompt and response (shortened), and the bad value.

What is checked:

* :func:`sample_prompts`: the call does not raise, returns exactly ``n`` :class:`Prompt` objects,
  none with empty (or whitespace-only) text;
* :func:`observation`: :meth:`TextTask.observe_turn` does not raise and returns a non-empty
  string;
* :func:`turn_reward`: :meth:`TextTask.turn_reward` does not raise and returns a finite number;
* :func:`score_episode_rewards`: :meth:`TextTask.score_episodes` returns one finite task reward
  per episode and agent (the default goes through :func:`score_rewards`);
* :func:`score_rewards`: ``score_batch`` does not raise and returns one real, finite number per
  (prompt, response) pair. When it raises, the pairs are scored one by one with
  :meth:`TextTask.score` (only on that failure path) to name the first failing row.

A PettingZoo env's faults are checked by :class:`~seqmarl.envs.game.AECGame` itself
(:class:`~seqmarl.errors.EnvError`).

A non-finite task reward is a bug in the task, not a training instability: it stops the run at
once (unlike a non-finite *loss*, which is skipped a few times before the run stops). The fast
path adds one ``numpy`` conversion and one finiteness test per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from seqmarl.envs.task import Prompt, TextTask
from seqmarl.errors import SeqmarlError, TaskError

__all__ = [
    "check_prompts",
    "check_rewards",
    "observation",
    "sample_prompts",
    "score_episode_rewards",
    "score_rewards",
    "task_label",
    "turn_reward",
]

#: Characters of a prompt or response quoted in a message.
QUOTE_CHARS = 60


def task_label(task: TextTask, env_id: str | None = None) -> str:
    """``env 'my-task-v0' (task MyTask)``, or ``task MyTask`` without an env id."""
    cls = type(task).__qualname__
    return f"env {env_id!r} (task {cls})" if env_id else f"task {cls}"


def _quote(text: Any, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of ``text`` cut to about ``limit`` characters (repr keeps it on one line)."""
    if isinstance(text, str) and len(text) > limit:
        return repr(text[: limit - 3]) + "..."
    out = repr(text)
    return out if len(out) <= limit + 2 else out[:limit] + "..."


def _exc(exc: BaseException) -> str:
    """``Type: message`` on one line, at most 200 characters of message."""
    msg = " ".join(str(exc).split())
    if len(msg) > 200:
        msg = msg[:197] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _empty(text: Any) -> bool:
    return not isinstance(text, str) or not text or text.isspace()


def check_prompts(
    prompts: Sequence[Any], *, task: TextTask, env_id: str | None = None, source: str = "prompts"
) -> None:
    """Every item is a :class:`Prompt` with non-empty text, or :class:`TaskError` names it."""
    for i, p in enumerate(prompts):
        if not isinstance(p, Prompt):
            raise TaskError(
                f"{task_label(task, env_id)}: {source} item {i} is a {type(p).__name__} "
                f"({_quote(p)}), not a Prompt; return envs.Prompt(text, reference=...) objects"
            )
        if _empty(p.text):
            raise TaskError(
                f"{task_label(task, env_id)}: {source} item {i} has empty text {_quote(p.text)} "
                f"(reference {_quote(p.reference)}); every prompt needs text for the model "
                "to read: drop such records when building the prompts"
            )


def sample_prompts(
    task: TextTask, n: int, rng: Any = None, *, env_id: str | None = None
) -> list[Prompt]:
    """``task.sample_prompts(n, rng)``, checked: exactly ``n`` prompts, each with text.

    Raises:
        TaskError: The call raised (kept as ``__cause__``), or returned the wrong number of
            items, a non-Prompt, or an empty prompt text.
    """
    source = f"sample_prompts({n})"
    try:
        prompts = task.sample_prompts(n, rng)
        prompts = list(prompts)
    except SeqmarlError:
        raise
    except Exception as exc:
        raise TaskError(f"{task_label(task, env_id)}: {source} raised {_exc(exc)}") from exc
    if len(prompts) != n:
        raise TaskError(
            f"{task_label(task, env_id)}: {source} returned {len(prompts)} prompts; "
            f"it must return exactly {n}"
        )
    check_prompts(prompts, task=task, env_id=env_id, source=source)
    return prompts


def observation(
    task: TextTask,
    prompt: Prompt,
    visible: Sequence[Any],
    *,
    env_id: str | None = None,
    agent: str = "",
    round: int = 0,
) -> str:
    """``task.observe_turn(prompt, visible, agent, round)``, checked to be a non-empty string.

    ``visible`` holds the :class:`~seqmarl.envs.episode.Turn` s the agent may see.

    Raises:
        TaskError: The task raised (kept as ``__cause__``) or gave an empty text.
    """
    where = f"observe() for {agent} after {len(visible)} earlier responses"
    if round:
        where += f" (round {round})"
    try:
        text = task.observe_turn(prompt, visible, agent, round)
    except SeqmarlError:
        raise
    except Exception as exc:
        raise TaskError(
            f"{task_label(task, env_id)}: {where} raised {_exc(exc)} (prompt {_quote(prompt.text)})"
        ) from exc
    if _empty(text):
        raise TaskError(
            f"{task_label(task, env_id)}: {where} gave an empty observation {_quote(text)} "
            f"(prompt {_quote(prompt.text)}); the model needs text to read: "
            "check the observation template"
        )
    return text


def turn_reward(task: TextTask, episode: Any, turn: Any, *, env_id: str | None = None) -> float:
    """``task.turn_reward(episode, turn)``, checked to be one finite number.

    Raises:
        TaskError: The task raised (kept as ``__cause__``) or gave a non-finite value.
    """
    where = f"turn_reward() for {turn.agent} in round {turn.round}"
    try:
        value = task.turn_reward(episode, turn)
    except SeqmarlError:
        raise
    except Exception as exc:
        raise TaskError(f"{task_label(task, env_id)}: {where} raised {_exc(exc)}") from exc
    try:
        r = float(value)
    except (TypeError, ValueError):
        r = float("nan")
    if not np.isfinite(r):
        raise TaskError(
            f"{task_label(task, env_id)}: {where} returned {_quote(value)} (response "
            f"{_quote(turn.response)}); a turn reward must be a finite number"
        )
    return r


def _row_default(f: int) -> str:
    return f"pair {f}"


def check_rewards(
    values: Any,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    task: TextTask,
    env_id: str | None = None,
    row: Callable[[int], str] = _row_default,
    method: str = "score_batch()",
) -> np.ndarray:
    """``values`` as a ``(len(prompts),)`` float64 array of finite task rewards.

    Args:
        values: What the task returned.
        prompts: The prompts scored (to quote in a message).
        responses: The responses scored.
        task: The task (named in a message).
        env_id: The env id (named in a message).
        row: Names pair ``f`` in a message, e.g. ``"row 3 (agent llm_1)"``.
        method: The task method that returned ``values``.

    Raises:
        TaskError: Wrong count, a value that is not a real number, or a NaN/inf.
    """
    n = len(prompts)
    if hasattr(values, "cpu") and hasattr(values, "detach"):  # a torch tensor, maybe on a GPU
        values = values.detach().cpu().numpy()
    elif not isinstance(values, (list, tuple, np.ndarray)):
        try:
            if isinstance(values, (str, bytes)):
                raise TypeError
            values = list(values)
        except TypeError:
            raise TaskError(
                f"{task_label(task, env_id)}: {method} returned {_quote(values)} "
                f"({type(values).__name__}); it must return a list of {n} numbers, "
                "one per (prompt, response) pair"
            ) from None
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):  # ragged nesting
        arr = np.asarray(list(values), dtype=object)
    if arr.ndim != 1 or arr.shape[0] != n:
        got = f"shape {arr.shape}" if arr.ndim != 1 else f"{arr.shape[0]} rewards"
        raise TaskError(
            f"{task_label(task, env_id)}: {method} returned {got} for {n} (prompt, response) "
            f"pairs; it must return one number per pair, in order"
        )
    if arr.dtype.kind not in "biuf":
        items = values if isinstance(values, (list, tuple)) else arr.tolist()  # not str-cast
        for f, v in enumerate(items):
            if isinstance(v, (int, float, np.integer, np.floating)):  # bool is an int
                continue
            raise TaskError(
                f"{task_label(task, env_id)}: {method} returned {_quote(v)} "
                f"({type(v).__name__}) for {row(f)}, not a number (prompt "
                f"{_quote(prompts[f].text)}, response {_quote(responses[f])}); "
                "a task reward must be a real number"
            )
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        f = int(np.flatnonzero(~finite)[0])
        raise TaskError(
            f"{task_label(task, env_id)}: {method} returned {float(arr[f])!r} for {row(f)} "
            f"(prompt {_quote(prompts[f].text)}, response {_quote(responses[f])}); "
            "a task reward must be finite: a NaN/inf reward is a bug in the reward function"
        )
    return arr


def score_rewards(
    task: TextTask,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    *,
    env_id: str | None = None,
    row: Callable[[int], str] = _row_default,
) -> np.ndarray:
    """``task.score_batch(prompts, responses)``, checked (see :func:`check_rewards`).

    When ``score_batch`` raises, the pairs are scored one at a time with ``task.score`` and
    the first pair that raises is named; the original exception is the ``__cause__``.

    Returns:
        ``(len(prompts),)`` float64 task rewards.

    Raises:
        TaskError: Any fault of the task's scoring.
    """
    try:
        values = task.score_batch(prompts, responses)
    except SeqmarlError:
        raise
    except Exception as exc:
        raise _locate(task, prompts, responses, exc, env_id, row) from exc
    return check_rewards(values, prompts, responses, task=task, env_id=env_id, row=row)


def _locate(
    task: TextTask,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    exc: Exception,
    env_id: str | None,
    row: Callable[[int], str],
) -> TaskError:
    """The error for a raising ``score_batch``: the first pair whose ``score`` fails alone."""
    label = task_label(task, env_id)
    for f, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        try:
            value = task.score(p, r)
        except Exception as row_exc:
            return TaskError(
                f"{label}: scoring raised {_exc(row_exc)} on {row(f)} (prompt "
                f"{_quote(p.text)}, response {_quote(r)})"
            )
        try:  # a batch that failed on converting a bad value (e.g. float("good"))
            check_rewards(
                [value],
                [p],
                [r],
                task=task,
                env_id=env_id,
                row=lambda _, f=f: row(f),
                method="score()",
            )
        except TaskError as bad:
            return bad
    return TaskError(
        f"{label}: score_batch() raised {_exc(exc)} on a batch of {len(prompts)} pairs "
        "(each pair scores without error alone)"
    )


def score_episode_rewards(
    task: TextTask, episodes: Sequence[Any], *, env_id: str | None = None
) -> np.ndarray:
    """``task.score_episodes(episodes)``, checked: ``(E, N)`` finite task rewards.

    A task that keeps the default (each agent's last response scored alone) goes through
    :func:`score_rewards`, one batched ``score_batch`` call with its row-by-row diagnosis; a
    task with a joint score is checked row by row, naming the episode and the agent.

    Raises:
        TaskError: Any fault of the task's scoring.
    """
    if not episodes:
        return np.zeros((0, 0))
    agents = episodes[0].agents
    n = len(agents)
    if type(task).score_episodes is TextTask.score_episodes:
        pairs = [(ep.prompt, ep.last_response(a)) for ep in episodes for a in agents]
        flat = score_rewards(
            task,
            [p for p, _ in pairs],
            [r for _, r in pairs],
            env_id=env_id,
            row=(
                (lambda f: f"agent {agents[f]}")
                if len(episodes) == 1
                else (lambda f: f"row {f // n} (agent {agents[f % n]})")
            ),
        )
        return flat.reshape(len(episodes), n)
    try:
        values = task.score_episodes(episodes)
    except SeqmarlError:
        raise
    except Exception as exc:
        raise TaskError(
            f"{task_label(task, env_id)}: score_episodes() raised {_exc(exc)} on "
            f"{len(episodes)} episodes (first prompt {_quote(episodes[0].prompt.text)})"
        ) from exc
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (len(episodes), n):
        got = "values that are not numbers" if arr is None else f"shape {arr.shape}"
        raise TaskError(
            f"{task_label(task, env_id)}: score_episodes() returned {got} for "
            f"{len(episodes)} episodes of {n} agents; it must return one row per episode, "
            f"one task reward per agent ({', '.join(agents)})"
        )
    bad = np.argwhere(~np.isfinite(arr))
    if len(bad):
        e, a = (int(x) for x in bad[0])
        raise TaskError(
            f"{task_label(task, env_id)}: score_episodes() returned {float(arr[e, a])!r} for "
            f"row {e} (agent {agents[a]}) (prompt {_quote(episodes[e].prompt.text)}); a task "
            "reward must be finite: a NaN/inf reward is a bug in the reward function"
        )
    return arr
