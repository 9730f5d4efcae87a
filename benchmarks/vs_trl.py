"""Step time of our GRPO trainer vs TRL's GRPOTrainer at equal settings, both in one process, interleaved.

Both sides: the same model folder, the same prompts in the same order (the
arithmetic task's training stream, as chat messages through the tokenizer's
chat template), group size, max new tokens, temperature 1 (top-p 1, top-k off),
learning rate, beta = 0 (no reference model), one optimizer step per rollout
over the whole batch in one micro-batch, token-mean loss (TRL's `dapo`
normalisation), HF-model generation (TRL: `transformers.generate`; ours: the HF
engine's own decoding loop; no vLLM on either side), fp32 CPU, the same torch thread
count, and one reward term: our `math_answer`, which TRL calls through a
reward-function adapter.

Interleaving: TRL runs `trainer.train()`; a TrainerCallback times each TRL
step (on_step_begin -> on_step_end) and then, outside that window, runs one
step of ours (stages 1-7 of rlreason.trainer.train driven with its own
pieces: `collect`, `make_train_batch`, advantages, `update_policy`, weight
sync; no logging, eval or checkpoint on either side). So the steps alternate
TRL, ours, TRL, ours, ... and machine-load drift hits both alike. The first
`--warmup` steps of each side are dropped.

Models: `tiny` (the shipped tiny reasoner) and `big` (a random 79M Llama with
the tiny tokenizer, as in benchmarks/rollout_speed.py). For `big`,
generation is forced to the full length on both sides: EOS is masked until
the limit (TRL: HF's `min_new_tokens` through GRPOConfig.generation_kwargs;
ours: the HF engine's `min_tokens`, the same rule in our decoding loop).

    .venv/bin/pip install -e ".[trl]"
    .venv/bin/python benchmarks/vs_trl.py                       # tiny and big
    .venv/bin/python benchmarks/vs_trl.py --models tiny --steps 6
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List

import torch

from rlreason import distributed
from rlreason.algos import ADVANTAGES
from rlreason.config import RewardTerm
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.rewards import REWARDS
from rlreason.tasks import TASKS
from rlreason.tasks.mixture import CORRECT, score_by_task
from rlreason.trainer import collect, make_train_batch, setup, timed
from rlreason.types import Completion, Rollout, Sample, ScoredRollout
from rlreason.update import plan_for, update_policy

TINY = str(REPO_ROOT / "models" / "tiny-reasoner")


def big_model_dir(out: str) -> str:
    """A random 79M-parameter Llama (hidden 640, 12 layers) with the tiny reasoner's tokenizer, saved to `out`."""
    from transformers import AutoTokenizer

    from rlreason.tinymodel import build_model

    tok = AutoTokenizer.from_pretrained(TINY)
    build_model(tok, hidden_size=640, layers=12, heads=10, intermediate_size=2560, max_positions=256,
                seed=0).save_pretrained(out)
    tok.save_pretrained(out)
    return out


class Ours:
    """Our trainer, one step per call: rlreason.trainer.train's stages 1-7 (beta = 0, one update per rollout)."""

    def __init__(self, path: str, a, run_dir: str):
        over = [f"model.path={path}", "model.device=cpu", f"run.root={run_dir}", "run.name=ours", "data.task=arithmetic",
                f"rollout.prompts_per_step={a.prompts}", f"rollout.group_size={a.group}",
                f"rollout.max_new_tokens={a.new_tokens}", "rollout.temperature=1.0", "rollout.engine=hf",
                f"train.lr={a.lr}", "algo.kl.coef=0.0", "algo.loss=ppo_clip", "algo.loss_agg=token_mean",
                f"train.micro_batch_size={a.prompts * a.group}", f"train.steps={a.steps}"]
        self.cfg = cfg = load_config(None, over)
        cfg.rewards = [RewardTerm(name="math_answer")]  # the one term TRL also computes (no format term)
        self.c = setup(cfg, None, None)
        if a.full_length:
            self.c.engine.min_tokens = a.new_tokens  # no EOS before the limit (the same rule as HF's min_new_tokens)
        self.times: List[float] = []
        self.perf: List[Dict[str, float]] = []
        self.lengths: List[float] = []

    def step(self) -> None:
        cfg, c, a = self.cfg, self.c, self.cfg.algo
        c.step += 1
        perf: Dict[str, float] = {}
        t0 = time.perf_counter()
        score = lambda rollout: ScoredRollout(rollout, *score_by_task(rollout, c.task.rewards_by_task, step=c.step))  # noqa: E731
        scored, _, _ = collect(cfg, c, score, CORRECT, perf)
        with timed(perf, "logprobs"):  # one update per rollout, no reference: the engine's log-probs are old_logp
            batch = make_train_batch(scored.rollout, None, c.tok.pad_token_id, a.mask_truncated)
            engine_logp = batch.old_logp  # [N, T]
        batch.advantages = distributed.global_advantages(ADVANTAGES.get(a.advantage), torch.tensor(scored.total),
                                                         cfg.rollout.group_size, a, values=None, mask=batch.loss_mask)
        with timed(perf, "update"):
            plan = plan_for(batch, a, cfg.train)
            update_policy(c.model, c.opt, batch, cfg, engine_logp, plan)
            c.sched.step()
        with timed(perf, "sync"):
            c.engine.sync_weights(c.model)
        self.times.append(time.perf_counter() - t0)
        self.perf.append(perf)
        self.lengths.append(statistics.mean(len(x.token_ids) for x in scored.rollout.completions))


def trl_reward(prompts, completions, answer, **_) -> List[float]:
    """TRL reward function -> our math_answer on the same texts (one Sample per completion)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    samples = [Sample(id=f"trl/{i}", task="arithmetic", prompt="", answer=ans) for i, ans in enumerate(answer)]
    comps = [Completion(text=t, token_ids=[], logprobs=[], finish_reason="stop") for t in texts]
    return REWARDS.get("math_answer")(Rollout(samples, comps, 1)).scores


def _timed_method(fn, stage: str, perf: List[Dict[str, float]]):
    """Wrap a bound TRL method so its wall time is added to perf[-1][stage] (the current step's record)."""
    def wrapper(*args, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            perf[-1][stage] = perf[-1].get(stage, 0.0) + time.perf_counter() - t0
    return wrapper


def run_model(name: str, path: str, a, tmp: str) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    ours = Ours(path, a, tmp)
    stream = TASKS.get("arithmetic")({}, seed=0).train_samples()  # what our uniform sampler draws, in order
    rows = [next(stream) for _ in range(a.prompts * a.steps)]
    data = Dataset.from_list([{"prompt": s.messages, "answer": s.answer} for s in rows])
    args = GRPOConfig(
        output_dir=os.path.join(tmp, "trl"), use_cpu=True, bf16=False, fp16=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, max_steps=a.steps,
        per_device_train_batch_size=a.prompts * a.group, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=a.group, max_completion_length=a.new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        beta=0.0, num_iterations=1, loss_type="dapo", shuffle_dataset=False, dataloader_num_workers=0,
        generation_kwargs={"min_new_tokens": a.new_tokens} if a.full_length else None,
    )
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    trl_times: List[float] = []
    trl_logs: List[dict] = []

    class Interleave(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            trl_perf.append({})
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            trl_times.append(time.perf_counter() - self.t0)
            ours.step()  # outside TRL's timed window
            print(f"  {name} step {state.global_step}: TRL {trl_times[-1]:.2f}s  ours {ours.times[-1]:.2f}s",
                  flush=True)

        def on_log(self, args, state, control, logs=None, **kw):
            trl_logs.append(dict(logs or {}))

    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward, args=args, train_dataset=data,
                          processing_class=tok, callbacks=[Interleave()])
    trl_perf: List[Dict[str, float]] = []
    for meth, stage in (("_generate", "generate"), ("_calculate_rewards", "reward"),
                        ("_generate_and_score_completions", "rollout_total")):  # TRL's breakdown: timed wrappers
        setattr(trainer, meth, _timed_method(getattr(trainer, meth), stage, trl_perf))
    torch.set_num_threads(a.threads)  # again: nothing above may have changed it
    trainer.train()
    w = a.warmup
    trl_med, our_med = statistics.median(trl_times[w:]), statistics.median(ours.times[w:])
    stages = sorted({k for p in ours.perf for k in p})
    for p, dt in zip(trl_perf, trl_times):  # update = the step minus generate-and-score (no old/ref forward here)
        p["update"] = dt - p.get("rollout_total", 0.0)
        p["other"] = p.get("rollout_total", 0.0) - p.get("generate", 0.0) - p.get("reward", 0.0)
    trl_stages = {k: statistics.median(p.get(k, 0.0) for p in trl_perf[w:]) for k in ("generate", "reward", "other", "update")}
    trl_len = [x["completions/mean_length"] for x in trl_logs if "completions/mean_length" in x]
    return {"model": name, "params": sum(p.numel() for p in model.parameters()), "trl_s": trl_med, "ours_s": our_med,
            "ratio": trl_med / our_med, "n": len(trl_times) - w,
            "ours_stages": {k: statistics.median(p.get(k, 0.0) for p in ours.perf[w:]) for k in stages},
            "trl_stages": trl_stages, "ours_len": statistics.mean(ours.lengths[w:]), "trl_len": statistics.mean(trl_len[w:]) if trl_len else None,
            "trl_times": trl_times, "ours_times": ours.times}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,big", help="comma list of tiny,big")
    p.add_argument("--steps", type=int, default=12, help="steps per side, warm-up included")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: this 2-core machine is shared)")
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--tiny", default="16,8,64", help="prompts,group,new_tokens for tiny (EOS allowed)")
    p.add_argument("--big", default="4,4,64", help="prompts,group,new_tokens for big (full length forced)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    import trl

    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"{a.threads} thread(s), load average at start {os.getloadavg()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            a.prompts, a.group, a.new_tokens = (int(x) for x in getattr(a, name).split(","))
            a.full_length = name == "big"
            path = TINY if name == "tiny" else big_model_dir(os.path.join(tmp, "big"))
            print(f"## {name}: {a.prompts} prompts x G={a.group}, {a.new_tokens} new tokens"
                  f"{' (forced)' if a.full_length else ''}", flush=True)
            results.append(run_model(name, path, a, os.path.join(tmp, name)))
    print(f"# load average at end {os.getloadavg()}")
    print("| model | params | steps | TRL median s | ours median s | TRL/ours "
          "| mean completion tokens (TRL / ours) |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['n']} | {r['trl_s']:.2f} | {r['ours_s']:.2f} | "
              f"{r['ratio']:.2f}x | "
              f"{r['trl_len'] if r['trl_len'] is None else round(r['trl_len'], 1)} / {r['ours_len']:.1f} |")
    print("\n| model | side | generate s | reward s | batch prep s | update (+sync) s |\n|---|---|---|---|---|---|")
    for r in results:
        t, s = r["trl_stages"], r["ours_stages"]
        print(f"| {r['model']} | TRL | {t['generate']:.2f} | {t['reward']:.3f} | {t['other']:.3f} | {t['update']:.2f} |")
        print(f"| {r['model']} | ours | {s.get('generate', 0):.2f} | {s.get('reward', 0):.3f} | {s.get('logprobs', 0):.3f} | "
              f"{s.get('update', 0) + s.get('sync', 0):.2f} |")
    for r in results:
        print(f"# {r['model']} raw TRL step s: {[round(x, 2) for x in r['trl_times']]}")
        print(f"# {r['model']} raw ours step s: {[round(x, 2) for x in r['ours_times']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
