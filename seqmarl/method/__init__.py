"""The method: settings and the reward coefficient matrix.

Settings (who plays, who learns, when roles exchange: :mod:`.settings`) and the
reward coefficient matrix that mixes the agents' rewards (:mod:`.mixing`).

Knows nothing of envs, models or algorithms.
"""
