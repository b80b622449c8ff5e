"""The paper's human-evaluation protocol as data: three questions, each answered A better / tie / B better.

Token-Shuffle (arXiv 2504.17789, Fig. 6) reports pairwise win/tie/lose rates on text alignment, visual
flaws and visual appearance; the wording of each question here is tsbench's.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    id: str
    title: str
    ask: str


QUESTIONS: tuple[Question, ...] = (
    Question("alignment", "Text alignment", "Which image matches the prompt better?"),
    Question("flaws", "Visual flaws", "Which image has fewer visual flaws (artifacts, broken or merged shapes)?"),
    Question("appearance", "Visual appearance", "Which image looks better overall?"),
)
QUESTION_IDS = tuple(q.id for q in QUESTIONS)

# What the page sends (the rater's view) and what is stored (the pair's systems, order of the pair).
SHOWN_CHOICES = ("left", "tie", "right")
STORED_CHOICES = ("a", "tie", "b")
