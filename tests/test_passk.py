import itertools
import math

import pytest

from seqmarl.eval.passk import pass_at_k, pass_at_k_table


def brute_force(n, c, k):
    """Fraction of k-subsets of n answers (c correct) that contain a correct one."""
    answers = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(answers[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_pass_at_k_equals_brute_force_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


def test_closed_form_and_edges():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 8, 3) == 1.0
    assert pass_at_k(20, 5, 4) == pytest.approx(1 - math.comb(15, 4) / math.comb(20, 4))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_table_is_monotone_and_averages_questions():
    table = pass_at_k_table([0, 1, 4], n=4)
    assert list(table) == [1, 2, 3, 4]
    assert table[1] == pytest.approx((0 + 0.25 + 1) / 3)
    assert all(table[k] <= table[k + 1] for k in range(1, 4))


def test_pass_at_k_plays_as_training_does_within_the_observation_limit(make_pool):
    """The questions go through the rollout's game: the run's observation limit holds there."""
    from seqmarl.envs.game import CUT
    from seqmarl.envs.tasks.arithmetic import ArithmeticTask
    from seqmarl.eval.passk import evaluate_pass_at_k

    pool = make_pool(agent_ids=("llm_0",))
    agent = pool["llm_0"]
    seen = []
    real = agent.respond

    def recording(obs, **kw):
        seen.extend(obs)
        return real(obs, **kw)

    agent.respond = recording
    task = ArithmeticTask()
    out = evaluate_pass_at_k(
        task, agent, num_questions=3, n=2, batch_size=4, max_observation_chars=24, seed=1
    )
    assert len(seen) == 6 and out["n"] == 2 and len(out["correct"]) == 3
    assert all(len(o) <= 24 for o in seen)  # whole observations are longer: each was cut
    assert all(CUT in o for o in seen)
