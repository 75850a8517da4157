"""Readable observations for OpenSpiel's small poker games: Kuhn poker and Leduc poker.

OpenSpiel's own strings for these games are terse (Kuhn's observation ``"211"``: the card and
the chips each player put in) and Leduc's observation string drops the betting history, so two
different situations can read the same. The views here say it in words, from what the player
knows (its own card, the public card, every bet so far), and nothing else:

* Kuhn poker: ``You hold the King.``, the betting so far (``you checked, player 1 bet 1
  chip``) and the pot with each player's share;
* Leduc poker: the private card and the public card by rank and suit (OpenSpiel tells the two
  cards of a rank apart, so the text does), the betting of each round, the pot and the chips
  left.

Each view is a function of the player's information state alone, and different information
states read differently (``tests/envs/test_openspiel_readable.py`` walks both game trees).
:class:`~seqmarl.envs.suites.openspiel.OpenSpielTextEnv` adds the header, the answer line and
``Available Moves: '[0]' Pass, '[1]' Bet``; action ids and the parse rule are OpenSpiel's.
Any other game (or a variant with parameters other than ``players``) keeps OpenSpiel's string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["READABLE", "kuhn_view", "leduc_view", "readable_view"]

_RANKS = ("Jack", "Queen", "King", "Ace")
_SUITS = ("Spades", "Hearts", "Diamonds", "Clubs")


def _rank(k: int) -> str:
    return _RANKS[k] if k < len(_RANKS) else f"card {k + 1}"


def _who(player: int, pid: int) -> str:
    return "you" if player == pid else f"player {player}"


def _chips(n: int) -> str:
    return f"{n} chip" + ("" if n == 1 else "s")


def _split(state: Any) -> tuple[list[int], list[tuple[int, int]]]:
    """(chance outcomes in order, (player, action) of every move in order)."""
    chance, moves = [], []
    for h in state.full_history():
        if h.player < 0:
            chance.append(int(h.action))
        else:
            moves.append((int(h.player), int(h.action)))
    return chance, moves


def _pot_line(put: list[int], pid: int) -> str:
    shares = ", ".join(f"{_who(p, pid)} put in {c}" for p, c in enumerate(put))
    return f"Pot: {_chips(sum(put))} ({shares})."


def kuhn_view(state: Any, pid: int) -> str:
    """Kuhn poker as player ``pid`` sees it: its card, the betting so far and the pot.

    Every player antes 1 chip; a Bet adds 1 chip. Pass with no bet outstanding is a check,
    against a bet a fold; Bet against a bet is a call.
    """
    n = state.get_game().num_players()
    chance, moves = _split(state)
    ranks = " < ".join(_rank(k) for k in range(n + 1))
    lines = [
        f"You hold the {_rank(chance[pid])}." if len(chance) > pid else "No card is dealt yet.",
        f"The deck has {n + 1} cards, {ranks}; each player holds one, and each put 1 chip "
        "in the pot. The highest card still in at the end wins the pot.",
    ]
    put, bet, said = [1] * n, False, []
    for player, action in moves:
        if action == 1:  # Bet
            said.append(f"{_who(player, pid)} {'called' if bet else 'bet 1 chip'}")
            put[player] += 1
            bet = True
        else:  # Pass
            said.append(f"{_who(player, pid)} {'folded' if bet else 'checked'}")
    lines.append("Betting so far: " + (", ".join(said) if said else "none") + ".")
    lines.append(_pot_line(put, pid))
    return "\n".join(lines)


#: Leduc's raise amount in each round (OpenSpiel's kFirstRaiseAmount, kSecondRaiseAmount).
_LEDUC_RAISE = (2, 4)
#: Leduc's starting chips per player (OpenSpiel's kStartingMoney).
_LEDUC_MONEY = 100


def _leduc_card(card: int) -> str:
    return f"the {_rank(card // 2)} of {_SUITS[card % 2]}"


def leduc_view(state: Any, pid: int) -> str:
    """Leduc poker as player ``pid`` sees it: both cards it may see, each round's bets, the pot.

    Every player antes 1 chip; Call matches the highest stake (a check when there is nothing
    to match), Raise matches it and adds 2 chips in round 1, 4 in round 2; Fold gives up.
    The public card is dealt after round 1's betting.
    """
    n = state.get_game().num_players()
    chance, _ = _split(state)
    ranks = " < ".join(_rank(k) for k in range(n + 1))
    lines = [
        f"You hold {_leduc_card(chance[pid])}." if len(chance) > pid else "No card is dealt yet.",
        f"The deck has two suits of {ranks}. A pair with the public card beats any other "
        "hand; otherwise the higher private card wins.",
        f"The public card is {_leduc_card(chance[n])}."
        if len(chance) > n
        else "The public card is not dealt yet (it comes after round 1's betting).",
    ]
    put, rounds, r, deals = [1] * n, [[], []], 0, 0
    for h in state.full_history():
        if h.player < 0:  # a deal; the one after the private cards opens round 2
            deals += 1
            r = 1 if deals > n else 0
            continue
        player, action, top = int(h.player), int(h.action), max(put)
        if action == 0:
            rounds[r].append(f"{_who(player, pid)} folded")
        elif action == 1:
            word = "called" if put[player] < top else "checked"
            rounds[r].append(f"{_who(player, pid)} {word}")
            put[player] = top
        else:
            rounds[r].append(f"{_who(player, pid)} raised by {_chips(_LEDUC_RAISE[r])}")
            put[player] = top + _LEDUC_RAISE[r]
    for k, said in enumerate(rounds[: r + 1]):
        lines.append(f"Round {k + 1} betting: " + (", ".join(said) if said else "none") + ".")
    lines.append(f"{_pot_line(put, pid)[:-1]}; you have {_chips(_LEDUC_MONEY - put[pid])} left.")
    return "\n".join(lines)


#: OpenSpiel game name -> its readable view ``(state, player) -> text``.
READABLE: dict[str, Callable[[Any, int], str]] = {
    "kuhn_poker": kuhn_view,
    "leduc_poker": leduc_view,
}


def readable_view(
    game: str, params: Mapping[str, Any] | None = None
) -> Callable[[Any, int], str] | None:
    """The readable view of ``game`` with ``params``, or None (OpenSpiel's own string then).

    Only the default variants have one: a parameter other than ``players`` (Leduc's
    ``action_mapping``, say) changes what the words would have to say.
    """
    if any(k != "players" for k in (params or {})):
        return None
    return READABLE.get(game)
