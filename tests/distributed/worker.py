"""What each rank of a 2-process test does (launched by torchrun from test_data_parallel.py).

``python worker.py train OUT RUN POISON OVERRIDES...``: every rank writes ``OUT/rank<r>.pt``;
``python worker.py learn OUT CASES``: one launch for many ``learn`` cases, every rank writing
``OUT/<case>/rank<r>.pt``. With one process (no torchrun) the same code gives the reference the
test compares against.
"""

import json
import os
import sys
import traceback

import torch

torch.set_num_threads(1)

from seqmarl.agents import AgentPool, tiny_model_and_tokenizer  # noqa: E402
from seqmarl.algos import ALGORITHMS  # noqa: E402
from seqmarl.config import GenerationConfig, load_config  # noqa: E402
from seqmarl.run.distributed import DistContext, setup  # noqa: E402
from seqmarl.train.learner import Learner  # noqa: E402

AGENTS = ("llm_0", "llm_1")
#: tests.fake_games.EvenSeedGame, registered by main() (a rank may have no turns of its bob)
EVEN_SEED_ENV = "even-seed-game-v0"
LENGTHS = [2, 5, 3, 4, 9, 6, 12, 7]
PROMPTS = [f"{a} plus {b} is" for a in range(3) for b in range(3)][:8]


def make_pool(mode, algo, dtype=torch.float32):
    model, tok = tiny_model_and_tokenizer("llama", seed=0)
    model = model.to(dtype)
    heads = AGENTS if ALGORITHMS.get(algo).uses_value_head else ()
    gen = GenerationConfig(max_new_tokens=12, stop_at_eos=True)
    return AgentPool(model, tok, AGENTS, mode=mode, value_heads=heads, generation=gen, seed=0)


def full(t):
    """A sharded (DTensor) tensor gathered whole; a plain one as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def trim(comp):
    """Drop response columns that are padding in every row (ranks end up with different T)."""
    width = max(int(comp.response_mask.sum(1).max()), 1)
    comp.response_ids = comp.response_ids[:, :width]
    comp.response_mask = comp.response_mask[:, :width]
    comp.logprobs = comp.logprobs[:, :width]
    if comp.values is not None:
        comp.values = comp.values[:, :width]
    if comp.entropy is not None:
        comp.entropy = comp.entropy[:, :width]
    return comp


def fixed_rollout(pool, agent, group):
    """The same completions on every process: 8 rows (4 prompts x 2 for group algorithms)."""
    prompts = [p for p in PROMPTS[: 8 // group] for _ in range(group)]
    gen = torch.Generator().manual_seed(123)
    comp = pool[agent].sample(prompts, generator=gen)
    # ragged answers, longer on rank 1's rows (a random tiny model rarely ends on its own)
    for row, length in enumerate(LENGTHS):
        comp.response_mask[row, length:] = 0
        comp.response_ids[row, length:] = pool.tokenizer.pad_token_id
        for t in (comp.logprobs, comp.values, comp.entropy):
            if t is not None:
                t[row, length:] = 0
    rewards = torch.linspace(-1.0, 1.5, len(prompts)) * (1 if agent == "llm_0" else -0.5)
    groups = torch.arange(len(prompts)) // group
    return comp, rewards, groups


def learn(dist, mode, algo, params, dtype="float32"):
    """One ``update`` per agent on this rank's rows of the fixed rollout; grads and state."""
    pool = make_pool(mode, algo, getattr(torch, dtype))
    cfg = ALGORITHMS.get(algo).make_config(**params)
    out = {}
    for i, agent in enumerate(AGENTS):
        learner = Learner(pool[agent], algo, cfg, seed=7 + i, dist=dist)
        comp, rewards, groups = fixed_rollout(pool, agent, cfg.group_size)
        n = len(rewards) // dist.world_size
        rows = torch.arange(dist.rank * n, (dist.rank + 1) * n)
        local = trim(comp.select(rows))
        batch = learner.make_batch(local, rewards[rows], groups[rows])
        learner.update(local, batch)
        params_ = learner.agent.parameters()
        out[agent] = {
            "grads": [full(p.grad).detach().clone() for p in params_],
            "weights": [full(p).detach().clone() for p in params_],
            "algo_state": learner.state.state_dict(),
            "width": local.response_mask.shape[1],
        }
    return out


def train(dist, out_dir, overrides, poison_rank=None):
    from seqmarl.train.trainer import Trainer

    cfg = load_config(None, overrides)
    resume = (out_dir / "config.yaml").exists()
    trainer = Trainer(cfg, out_dir, resume=resume)
    if poison_rank is not None and dist.rank == poison_rank:  # this rank's loss goes NaN once
        agent = trainer.learners["llm_0"].agent
        real = agent.evaluate
        calls = {"n": 0}

        def poisoned(*args, **kwargs):
            out = real(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == 2:  # iteration 1's forward pass on this rank only
                out.logprobs = out.logprobs * float("nan")
            return out

        agent.evaluate = poisoned
    trainer.fit()
    return {
        "learners": {a: lr.state_dict() for a, lr in trainer.learners.items()},
        "skipped": {a: lr.skipped_steps for a, lr in trainer.learners.items()},
    }


def learn_cases(dist, out, cases):
    """``learn`` for each case in turn, its ranks' results in ``out/<case>/rank<r>.pt``.

    A case that raises leaves its traceback in ``out/<case>/error-rank<r>.txt`` and ends the
    launch (the ranks could no longer be in step); the cases after it have no folder.
    """
    for name, (mode, algo, params, dtype) in cases.items():
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        try:
            result = learn(dist, mode, algo, params, dtype)
        except BaseException:
            with open(os.path.join(folder, f"error-rank{dist.rank}.txt"), "w") as f:
                f.write(traceback.format_exc())
            raise
        torch.save(result, os.path.join(folder, f"rank{dist.rank}.pt"))


def main():
    from seqmarl.envs import register_pettingzoo
    from tests.fake_games import EvenSeedGame

    register_pettingzoo(EVEN_SEED_ENV, EvenSeedGame)  # in the workers only: the suite's is kept
    mode, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if mode == "learn":  # learn OUT CASES: JSON {name: [pool mode, algo, params, dtype]}
        cases = json.loads(sys.argv[3])
        fsdp = {args[0] == "fsdp" for args in cases.values()}
        if len(fsdp) != 1:
            raise SystemExit("learn: fsdp cases and others need separate launches")
        strategy = "fsdp" if fsdp.pop() else "data_parallel"
    else:
        strategy = "data_parallel"
    dist = setup(strategy) if world > 1 else DistContext()
    if mode == "learn":
        learn_cases(dist, out, cases)
    elif mode == "train":
        from pathlib import Path

        poison = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "-" else None
        result = train(dist, Path(sys.argv[3]), sys.argv[5:], poison)
        torch.save(result, os.path.join(out, f"rank{dist.rank}.pt"))
    else:
        raise SystemExit(f"unknown mode {mode}")
    if dist.enabled:
        torch.distributed.destroy_process_group()
        # skip interpreter teardown: gloo's threads were seen to abort it once (SIGABRT,
        # "terminate called without an active exception") after the work was done
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
