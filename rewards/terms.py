"""The reward-term registry and how terms combine (re-exported by `rlreason.rewards`; see its docstring).

A term module imports its registry from here, so no module imports the package that imports it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, List, Optional

from rlreason.errors import RewardError
from rlreason.registry import Registry
from rlreason.types import UNCHECKED, Completion, RewardOutput, Rollout, Sample

RewardFn = Callable[..., RewardOutput]

REWARDS: Registry[RewardFn] = Registry("reward term")


def score_each(rollout: Rollout, fn: Callable[[Sample, Completion], float]) -> List[float]:
    """Apply `fn(sample, completion) -> float` to every completion of `rollout`.

    An exception inside `fn` becomes a `RewardError` naming the completion index
    and sample id, so per-completion terms get useful errors for free:

    >>> from rlreason.types import Completion, Rollout, Sample
    >>> s = Sample(id="q7", task="t", prompt="p", answer="1")
    >>> c = Completion(text="x", token_ids=[], logprobs=[], finish_reason="stop")
    >>> score_each(Rollout([s], [c, c], 2), lambda s, c: float(len(c.text)))
    [1.0, 1.0]
    """
    scores: List[float] = []
    for i, completion in enumerate(rollout.completions):
        sample = rollout.sample_of(i)
        try:
            scores.append(float(fn(sample, completion)))
        except Exception as e:
            raise RewardError(
                f"completion {i} of sample {sample.id!r}: {type(e).__name__}: {e}",
                index=i,
                sample_id=sample.id,
            ) from e
    return scores


def as_term(t: Any) -> Any:
    """A term spec as an object with .name/.weight/.params (dicts from YAML or task defaults are converted)."""
    if isinstance(t, dict):
        return SimpleNamespace(name=t["name"], weight=t.get("weight", 1.0), params=t.get("params", {}))
    return t


def correctness_term(terms: Iterable[Any]) -> Any:
    """The one rule for 'correct': the term math_answer when present, else the first term.

    Example: [format, code_tests] -> code_tests; [math_answer, format] -> math_answer.
    """
    terms = [as_term(t) for t in terms]
    return next((t for t in terms if t.name == "math_answer"), terms[0])


def _params_of(term: Any) -> Dict[str, Any]:
    """A term spec's params as a plain dict (accepts None, dicts, OmegaConf DictConfig)."""
    params = getattr(term, "params", None)
    return dict(params) if params else {}


STEP_PARAM = "step"  # supplied by compute_rewards, never by the config
CORRECT_PARAM = "is_correct"  # supplied by compute_rewards: [N] verdicts of the correctness term
RUN_PARAMS = (STEP_PARAM, CORRECT_PARAM)


def takes(fn: RewardFn, param: str) -> bool:
    """Whether the term `fn` declares the keyword `param` (one of RUN_PARAMS, supplied at run time)."""
    return param in inspect.signature(fn).parameters


def takes_step(fn: RewardFn) -> bool:
    """Whether the term `fn` declares a `step` keyword (the current training step)."""
    return takes(fn, STEP_PARAM)


def _run_term(rollout: Rollout, term: Any, params: Dict[str, Any]) -> RewardOutput:
    """One term's output, with a failure or a wrong number of scores as a RewardError naming the term."""
    try:
        out = REWARDS.get(term.name)(rollout, **params)
    except Exception as e:
        raise RewardError(f"reward term '{term.name}' failed: {e}", term=term.name,
                          index=getattr(e, "index", None), sample_id=getattr(e, "sample_id", None)) from e
    if len(out.scores) != len(rollout):
        raise RewardError(f"reward term '{term.name}' returned {len(out.scores)} scores for {len(rollout)} "
                          f"completions", term=term.name)
    try:
        out.outcome_list()
    except ValueError as e:
        raise RewardError(f"reward term '{term.name}': {e}", term=term.name) from None
    return out


def check_terms(terms: List[Any]) -> Optional[str]:
    """The name of the correctness term of `terms` (None for no terms); ValueError when a name is listed twice
    or the correctness term itself needs verdicts (`is_correct`). Run at config time and by compute_rewards."""
    names = [t.name for t in terms]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"reward term '{name}' is listed twice")
    judge = correctness_term(terms).name if terms else None
    if judge and takes(REWARDS.get(judge), CORRECT_PARAM):
        raise ValueError(f"reward term '{judge}' decides correctness here, but it needs a correctness term "
                         f"of its own: add math_answer (or the task's correctness term) before it")
    return judge


@dataclass
class TermScores:
    """What `compute_rewards` gives for a rollout of N completions."""

    total: List[float]  # [N] weighted sum of the terms
    per_term: Dict[str, List[float]]  # {term: [N] raw scores}
    counts: Dict[str, int] = field(default_factory=dict)  # {"term/key": n}, e.g. "math_answer/timeouts"
    outcomes: Dict[str, List[str]] = field(default_factory=dict)  # {term: [N] ok | wrong | timeout | error}

    def checked(self) -> List[bool]:
        """[N] False where some term's check could not be run to the end (timeout or error)."""
        return [not any(o[i] in UNCHECKED for o in self.outcomes.values()) for i in range(len(self.total))]


def compute_rewards(rollout: Rollout, terms: Iterable[Any], step: int = 0) -> TermScores:
    """Score `rollout` with each term: the weighted total [N], each term's raw scores, counters and outcomes.

    `terms` are objects with `.name`, `.weight` and `.params` (config items).
    The total is the weighted sum of the raw term scores. An unknown name raises
    the registry's `UnknownName` (listing known terms); a term that raises, or
    returns the wrong number of scores or outcomes, raises `RewardError` naming the term
    (and the sample, when the term reported it). Terms that declare a `step`
    keyword get `step` (the training step); terms that declare `is_correct` (e.g.
    `kimi_length`) run last and get the verdicts [N] (score > 0) of the
    correctness term (`correctness_term`). Example: terms math_answer
    (weight 1) and format (weight 0.5) scoring 1.0 and 0.0 give total 1.0.
    """
    terms = [as_term(t) for t in terms]
    judge = check_terms(terms)
    outs: Dict[str, RewardOutput] = {}
    for term in sorted(terms, key=lambda t: takes(REWARDS.get(t.name), CORRECT_PARAM)):  # stable: config order
        fn, params = REWARDS.get(term.name), _params_of(term)
        if takes(fn, STEP_PARAM):
            params[STEP_PARAM] = int(step)
        if takes(fn, CORRECT_PARAM):
            params[CORRECT_PARAM] = [x > 0 for x in outs[judge].scores]
        outs[term.name] = _run_term(rollout, term, params)
    result = TermScores([0.0] * len(rollout), {})
    for term in terms:  # summed in config order
        out = outs[term.name]
        scores = [float(x) for x in out.scores]
        result.per_term[term.name] = scores
        result.outcomes[term.name] = out.outcome_list()
        weight = float(getattr(term, "weight", 1.0))
        result.total = [t + weight * s for t, s in zip(result.total, scores)]
        for key, value in out.counts.items():
            result.counts[f"{term.name}/{key}"] = int(value)
        if out.outcomes:  # a term that reports outcomes: how many of its checks could not run
            result.counts[f"{term.name}/unchecked"] = sum(o in UNCHECKED for o in out.outcomes)
    return result


def validate_params(name: str, params: Optional[Dict[str, Any]]) -> None:
    """Check that `params` only has keywords the term `name` accepts, before any model loads.

    Raises the registry's `UnknownName` for an unknown term and ValueError for
    an unknown or missing param, e.g.
    "reward term 'format': unknown param 'scor'; accepted: think_open, think_close, require_boxed, score".
    """
    fn = REWARDS.get(name)
    signature = inspect.signature(fn)
    accepted = [
        p
        for p in list(signature.parameters.values())[1:]  # the first one is the rollout
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in RUN_PARAMS
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    accepted_names = [p.name for p in accepted]
    given = dict(params or {})
    for key in RUN_PARAMS:
        if key in given and takes(fn, key):
            raise ValueError(f"reward term '{name}': '{key}' is set by the trainer, not in params")
    for key in given:
        if key not in accepted_names and not takes_any:
            listed = ", ".join(accepted_names) or "(none)"
            raise ValueError(f"reward term '{name}': unknown param '{key}'; accepted: {listed}")
    for p in accepted:
        if p.default is p.empty and p.name not in given:
            raise ValueError(f"reward term '{name}': missing required param '{p.name}'")
