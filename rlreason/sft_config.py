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
