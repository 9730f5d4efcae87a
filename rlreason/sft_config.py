"""The schema of `rlreason sft` (cold-start supervised fine-tuning), loaded by `config_load.load_config`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from rlreason.errors import ConfigError
from rlreason.config_validate import _check, _known


@dataclass
class SFTConfig:
    """Cold-start supervised fine-tuning on generated demonstrations (`rlreason sft`)."""

    out: str = "models/tiny-reasoner"
    """Folder the fine-tuned model and tokenizer are saved to."""
    init: str = "scratch"
    """'scratch' builds a new tiny model (arch below) with the project's character tokenizer; else an HF path."""
    hidden_size: int = 128
    """scratch: model width."""
    layers: int = 4
    """scratch: transformer blocks."""
    heads: int = 4
    """scratch: attention heads."""
    intermediate_size: int = 512
    """scratch: MLP width."""
    max_positions: int = 256
    """scratch: longest sequence the model supports."""
    task: str = "arithmetic"
    """Task whose training split supplies the demonstrations."""
    task_params: Dict[str, Any] = field(default_factory=dict)
    """Parameters of that task."""
    examples: int = 20000
    """Demonstrations generated (from the task's training split only)."""
    steps: int = 1000
    """Length of the LR schedule in optimizer steps."""
    stop_at: int = 0
    """Stop after this many steps (0 = all `steps`): a deliberately partial cold start, mid-schedule."""
    batch_size: int = 64
    """Sequences per optimizer step."""
    lr: float = 1e-3
    """AdamW peak learning rate (cosine decay to 10% after warm-up)."""
    warmup_steps: int = 50
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seed for the initial weights and the data order."""
    eval_size: int = 256
    """Held-out problems scored (greedy) after training."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    demos: str = "task"
    """Demonstrations: 'task' (the task's worked ones, `examples` of them) or 'shortest_of_k' (shortest
    rejection sampling, Kimi k1.5 §2.4: the `init` model's shortest correct answer of `sample_k` samples per
    training prompt; prompts with none are dropped; `examples` is not used)."""
    sample_k: int = 8
    """shortest_of_k: completions sampled per prompt."""
    sample_prompts: int = 256
    """shortest_of_k: training prompts sampled from (the first ones of the task's training stream)."""
    sample_temperature: float = 1.0
    """shortest_of_k: sampling temperature."""
    sample_max_new_tokens: int = 0
    """shortest_of_k: token limit of a sample (0 = max_positions // 2, as the held-out eval); a sample that
    hits it is never kept."""
    mask_tool_output: bool = True
    """Leave a demonstration's tool-output blocks (```output ...```) out of the loss, as RL does (docs/tools.md)."""

    def validate(self, source: str = "config") -> None:
        """Cross-field rules; raises ConfigError naming the key and `source`."""
        from rlreason.tasks import TASKS

        _known(TASKS, self.task, source, "task")
        try:
            TASKS.get(self.task).check_params(self.task_params)
        except ValueError as err:
            raise ConfigError(f"{source}: task_params: {err}") from None
        for key in ("hidden_size", "layers", "heads", "intermediate_size", "max_positions", "examples", "steps", "batch_size"):
            _check(getattr(self, key) >= 1, source, key, "must be >= 1")
        _check(self.hidden_size % self.heads == 0, source, "heads", f"must divide hidden_size ({self.hidden_size})")
        _check(self.lr > 0, source, "lr", "must be > 0")
        _check(0 <= self.stop_at <= self.steps, source, "stop_at", f"must be in [0, steps={self.steps}]")
        self._validate_demos(source)

    def _validate_demos(self, source: str) -> None:
        from pathlib import Path

        from rlreason.sft_demos import DEMOS

        _known(DEMOS, self.demos, source, "demos")
        _check(not DEMOS.traits(self.demos)["samples"] or self.init != "scratch", source, "init",
               f"demos={self.demos} samples from the model it fine-tunes: set init to a model folder")
        _check(self.init == "scratch" or Path(self.out).resolve() != Path(self.init).resolve(), source, "out",
               f"must differ from init ({self.init}): the fine-tuned model goes to a new folder")
        for key in ("sample_k", "sample_prompts"):
            _check(getattr(self, key) >= 1, source, key, "must be >= 1")
        _check(self.sample_temperature > 0, source, "sample_temperature", "must be > 0")
        _check(self.sample_max_new_tokens >= 0, source, "sample_max_new_tokens", "must be >= 0")
