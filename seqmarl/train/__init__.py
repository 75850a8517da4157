"""Training: the loop, the rollout, the update, the league and the resume check.

The loop (:mod:`.trainer`), playing a batch of episodes (:mod:`.rollout`), the
per-agent update (:mod:`.learner`), the update of all the LoRA agents of a base in one pass
(:mod:`.mixed`), the league of frozen snapshots (:mod:`.league`) and the resume check
(:mod:`.resume`).

Imports the method, envs, agents, algos, config and the run machinery; nothing in
:mod:`seqmarl.eval` or the command line.
"""
