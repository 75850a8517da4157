"""``sentiment-v0``: continue a movie-review opening positively; VADER reward. No data needed.

Prompts are short review openings written for this project (below), so the task runs on any
machine. The reward of a response is VADER's compound sentiment score (Hutto & Gilbert 2014,
package ``vadersentiment``) of the prompt followed by the response, in [-1, 1]: always the
agent's own sentence, never the earlier seats'. A later seat sees CORY's observer prompt:

    I can make this sentence "<prompt><previous response>" more positive: <prompt>

(with several earlier seats, each earlier sentence is quoted: ``"..." and "..."``). This is the
built-in stand-in for the paper's IMDB task and the task of the main job (``seqmarl train``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqmarl.envs.task import FormatTemplate, Prompt, TextTask, as_generator

__all__ = ["OPENINGS", "POSITIVE_REWRITE", "SentimentTask", "vader_scores"]

#: CORY's observer template for sentiment (the paper's IMDB prompt).
POSITIVE_REWRITE = FormatTemplate(
    later="I can make this sentence {responses} more positive: {prompt}",
    item='"{prompt}{response}"',
    joiner=" and ",
)

#: Review openings written for seqmarl (not taken from any dataset).
OPENINGS = (
    "This movie was",
    "I watched this film last night and",
    "The acting in this one",
    "Honestly, the plot",
    "My friends told me this movie",
    "From the very first scene, I",
    "The director clearly",
    "It is hard to describe how",
    "The soundtrack of this film",
    "I went in expecting",
    "Two hours later, I",
    "The lead actress",
    "As a fan of the original,",
    "The special effects",
    "This is the kind of movie that",
    "The ending",
    "Watching this with my family,",
    "The dialogue in this film",
    "I rented this on a whim and",
    "The cinematography",
    "For a low budget picture,",
    "The sequel",
    "Nothing prepared me for",
    "The characters",
    "Halfway through the movie,",
    "The screenplay",
    "I have seen many westerns, but",
    "The villain",
    "This documentary",
    "After reading the book, I",
    "The pacing of the story",
    "The cast",
    "I laughed when",
    "The final act",
    "Critics called it",
    "This animated feature",
    "The first half hour",
    "On a rainy Sunday, this film",
    "The romance between the leads",
    "The horror scenes",
    "Every time I watch this,",
    "The costumes and sets",
    "I expected a comedy, but",
    "The young actor",
    "This remake",
    "The twist",
    "By the time the credits rolled,",
    "The score by the composer",
    "I can't stop thinking about",
    "The story follows a man who",
)


def vader_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound scores in [-1, 1]."""
    return [_vader().polarity_scores(t)["compound"] for t in texts]


_ANALYZER = None


def _vader():
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


class SentimentTask(TextTask):
    """Positive continuation of review openings, scored by VADER.

    Args:
        openings: Prompts to draw from (default: :data:`OPENINGS`).
    """

    name = "sentiment"

    def __init__(self, *, openings: Sequence[str] = OPENINGS):
        super().__init__(template=POSITIVE_REWRITE)
        if not openings:
            raise ValueError("openings must not be empty")
        self.prompts = [Prompt(o) for o in openings]

    def sample_prompts(self, n: int, rng: int | np.random.Generator | None = None) -> list[Prompt]:
        """``n`` openings drawn with replacement."""
        idx = as_generator(rng).integers(0, len(self.prompts), size=n)
        return [self.prompts[i] for i in idx]

    def score(self, prompt: Prompt, response: str) -> float:
        """VADER compound score of the prompt followed by the response."""
        return vader_scores([prompt.text + response])[0]

    def score_batch(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Scores of many pairs."""
        return vader_scores([p.text + r for p, r in zip(prompts, responses, strict=True)])
