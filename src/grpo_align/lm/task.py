"""A task family whose answers form a known finite set per question.

Every prompt has the same number of words (``PROMPT_WORDS``), so batches need no padding
and every position id is the same across questions. Every candidate answer is one word
followed by ``<eos>`` (``ANSWER_TOKENS`` = 2 tokens); any other completion (a junk word,
an answer that does not stop, an empty answer) is the "anything else" class with reward 0.

Two kinds of question:

* binary:           ``is <a> <rel> <b> ? :``          candidates ``yes``, ``no``
* multiple choice:  ``which <a> <o1> <o2> <o3> :``    candidates ``o1``, ``o2``, ``o3``

The content words are arbitrary; the model learns each question's answer distribution by
heart from noisy labels (``noisy_labels``), which is what gives the reference model its
per-question probability of the correct answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grpo_align.errors import InputError

__all__ = [
    "ANSWER_TOKENS",
    "LONG_ANSWER",
    "PROMPT_WORDS",
    "SEQUENCE_CANDIDATES",
    "Question",
    "Task",
    "build_sequence_task",
    "build_task",
    "noisy_labels",
    "sequence_labels",
    "sequence_task_words",
    "task_words",
]

ENTITIES = ("ant", "bee", "cat", "dog", "elk", "fox", "gnu", "hen", "ibis", "jay", "kiwi", "lynx", "mole", "newt")
RELATIONS = ("eats", "likes", "fears", "sees")
OPTIONS = ("red", "green", "blue", "gold", "gray", "pink", "teal", "plum")
JUNK = ("maybe", "unsure", "pass")  # labels outside every candidate set: the "anything else" class
FIXED = ("is", "which", "?", ":", "yes", "no")
#: words of the answers of different lengths with a shared prefix (``build_sequence_task``);
#: last in the vocabulary, so the ids of every other word are unchanged
SEQUENCE_WORDS = ("indeed",)
SEQUENCE_CANDIDATES = ("yes", "yes indeed", "no")
#: the long answer of the sequence experiment (6 tokens with <eos>): the aggregations' end
#: points differ more the longer it is against ``yes`` (docs/lm.md)
LONG_ANSWER = "yes indeed it is true"

PROMPT_WORDS = 6
ANSWER_TOKENS = 2  # the answer word and <eos>


def task_words() -> tuple[str, ...]:
    """Every word the task uses, in a fixed order (the tokenizer's vocabulary after specials)."""
    return FIXED + ENTITIES + RELATIONS + OPTIONS + JUNK + SEQUENCE_WORDS


@dataclass(frozen=True)
class Question:
    """One question: its prompt, its candidate answers and their rewards.

    Any completion whose decoded text is not one of ``candidates`` earns 0.
    """

    prompt: str
    candidates: tuple[str, ...]
    rewards: tuple[float, ...]
    kind: str

    @property
    def correct(self) -> int:
        """Index of the best candidate."""
        return int(np.argmax(self.rewards))

    def reward(self, text: str) -> float:
        """Reward of a decoded completion (the text before ``<eos>``)."""
        text = text.strip()
        for cand, r in zip(self.candidates, self.rewards, strict=False):
            if text == cand:
                return float(r)
        return 0.0


@dataclass(frozen=True)
class Task:
    """A list of questions with a known finite answer set each."""

    questions: tuple[Question, ...]

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def prompts(self) -> list[str]:
        return [q.prompt for q in self.questions]

    @property
    def max_candidates(self) -> int:
        return max(len(q.candidates) for q in self.questions)

    def rewards(self, index: Sequence[int], texts: Sequence[str]) -> np.ndarray:
        """Rewards of decoded completions ``texts[i]`` to questions ``index[i]``."""
        return np.array([self.questions[i].reward(t) for i, t in zip(index, texts, strict=False)], dtype=float)

    def correct_index(self) -> np.ndarray:
        return np.array([q.correct for q in self.questions])

    def __repr__(self) -> str:
        kinds = [q.kind for q in self.questions]
        return f"Task(questions={len(self)}, binary={kinds.count('binary')}, choice={kinds.count('choice')})"


def build_task(n_binary: int = 12, n_choice: int = 12, seed: int = 0) -> Task:
    """Distinct random questions: ``n_binary`` yes/no and ``n_choice`` three-way choices."""
    if n_binary < 0 or n_choice < 0 or n_binary + n_choice < 1:
        raise InputError("questions", f"expected at least one question, got n_binary={n_binary}, n_choice={n_choice}")
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    questions: list[Question] = []
    while len(questions) < n_binary:
        a, b = rng.choice(ENTITIES, size=2, replace=False)
        prompt = f"is {a} {rng.choice(RELATIONS)} {b} ? :"
        if prompt in seen:
            continue
        seen.add(prompt)
        correct = int(rng.integers(2))
        questions.append(Question(prompt, ("yes", "no"), (1.0, 0.0) if correct == 0 else (0.0, 1.0), "binary"))
    while len(questions) < n_binary + n_choice:
        a = rng.choice(ENTITIES)
        opts = tuple(str(o) for o in rng.choice(OPTIONS, size=3, replace=False))
        prompt = f"which {a} {' '.join(opts)} :"
        if prompt in seen:
            continue
        seen.add(prompt)
        rewards = [0.0, 0.0, 0.0]
        rewards[int(rng.integers(3))] = 1.0
        questions.append(Question(prompt, opts, tuple(rewards), "choice"))
    for q in questions:
        assert len(q.prompt.split()) == PROMPT_WORDS
    return Task(tuple(questions))


def sequence_task_words(task: Task) -> tuple[str, ...]:
    """``task_words()`` then every word of the task's candidates not among them, in order of
    first appearance (appended, so the ids of the other words are unchanged)."""
    words = list(task_words())
    for q in task.questions:
        for cand in q.candidates:
            words += [w for w in cand.split() if w not in words]
    return tuple(words)


def build_sequence_task(n_questions: int = 8, seed: int = 0, long_answer: str = "yes indeed") -> Task:
    """Yes/no questions whose answers differ in token length and share a prefix (THEORY.md 10).

    Candidates ``yes`` (2 tokens with <eos>), ``long_answer`` (its words and <eos>; it must
    start with ``yes``, the shared prefix) and ``no`` (2 tokens). Half the questions (in a
    random order) are "yes" questions: both yes answers earn 1, ``no`` 0; the others reward
    ``no`` only. The answers of one reward have different lengths, so the aggregation
    decides how the mass splits between them. The tokenizer must know the long answer's
    words: ``build_tokenizer(sequence_task_words(task))``.
    """
    if n_questions < 1:
        raise InputError("n_questions", f"expected at least one question, got {n_questions}")
    words = long_answer.split() if isinstance(long_answer, str) else []
    if len(words) < 2 or words[0] != "yes":
        raise InputError("long_answer", f"expected 'yes' followed by at least one word, got {long_answer!r}")
    candidates = ("yes", " ".join(words), "no")
    rng = np.random.default_rng(seed)
    kinds = rng.permutation([i % 2 == 0 for i in range(n_questions)])
    seen: set[str] = set()
    questions: list[Question] = []
    while len(questions) < n_questions:
        a, b = rng.choice(ENTITIES, size=2, replace=False)
        prompt = f"is {a} {rng.choice(RELATIONS)} {b} ? :"
        if prompt in seen:
            continue
        seen.add(prompt)
        rewards = (1.0, 1.0, 0.0) if kinds[len(questions)] else (0.0, 0.0, 1.0)
        questions.append(Question(prompt, candidates, rewards, "sequence"))
    return Task(tuple(questions))


def sequence_labels(
    task: Task,
    n_labels: int,
    yes_masses: Sequence[Sequence[float]],
    no_masses: Sequence[Sequence[float]],
) -> list[dict[str, int]]:
    """Label counts of the sequence task with designed answer frequencies.

    The i-th "yes" question (both yes answers rewarded) gets ``yes_masses[i % len]`` (the
    frequencies of its three candidates), the i-th "no" question ``no_masses[i % len]``;
    counts are ``round(mass n_labels)``. The reference model fitted to them has these
    answer probabilities, where the aggregations' end points differ most (docs/lm.md).
    """
    if n_labels < 1:
        raise InputError("n_labels", f"expected an integer >= 1, got {n_labels!r}")
    for name, masses in (("yes_masses", yes_masses), ("no_masses", no_masses)):
        rows = [np.asarray(m, dtype=float) for m in masses]
        if not rows or any(r.shape != (3,) or np.any(r < 0) or abs(r.sum() - 1) > 1e-9 for r in rows):
            raise InputError(name, "expected a non-empty list of three non-negative frequencies summing to 1")
    out = []
    seen = {True: 0, False: 0}
    for q in task.questions:
        is_yes = q.rewards[0] > q.rewards[2]
        masses = yes_masses if is_yes else no_masses
        freq = masses[seen[is_yes] % len(masses)]
        seen[is_yes] += 1
        counts = {c: round(m * n_labels) for c, m in zip(q.candidates, freq, strict=True)}
        out.append({c: n for c, n in counts.items() if n > 0})
    return out


def noisy_labels(
    task: Task, n_labels: int = 40, low: float = 0.05, high: float = 0.95, junk_rate: float = 0.1, seed: int = 0
) -> list[dict[str, int]]:
    """Label counts per question for the supervised phase: {answer word: count}.

    Question c is labelled correctly ``round(s_c n_labels)`` times, with s_c evenly spread
    over [low, high] in a random order; the other labels are junk words (the "anything
    else" class) with probability ``junk_rate`` and otherwise wrong candidates at random.
    The reference model fitted to these counts has a correct-answer probability near s_c.
    """
    if not 0 <= low <= high <= 1:
        raise InputError("low/high", f"expected 0 <= low <= high <= 1, got {low}, {high}")
    rng = np.random.default_rng(seed)
    targets = rng.permutation(np.linspace(low, high, len(task)))
    out = []
    for q, s in zip(task.questions, targets, strict=False):
        counts: dict[str, int] = {}
        n_correct = round(s * n_labels)
        counts[q.candidates[q.correct]] = n_correct
        wrong = [c for i, c in enumerate(q.candidates) if i != q.correct]
        for _ in range(n_labels - n_correct):
            word = str(rng.choice(JUNK)) if rng.random() < junk_rate else str(rng.choice(wrong))
            counts[word] = counts.get(word, 0) + 1
        out.append({w: c for w, c in counts.items() if c > 0})
    return out
