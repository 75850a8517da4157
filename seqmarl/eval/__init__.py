"""Measuring trained agents: eval, pass@k, matches, ratings, round robin, exploitability.

``seqmarl eval`` (:mod:`.evaluate`), pass@k (:mod:`.passk`),
matches between runs (:mod:`.matches`), ratings and the round robin (:mod:`.ratings`,
:mod:`.roundrobin`), and exact exploitability (:mod:`.exploitability`, :mod:`.policy_reading`).

Plays episodes through :mod:`seqmarl.train.rollout`; nothing here trains.
"""
