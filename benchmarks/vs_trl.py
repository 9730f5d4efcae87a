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

Models: `tiny` (the shipped tiny reasoner), `longcot` (the shipped long-CoT
model on `longcot_arith`, ~260-token answers, run once per `--longcot-tokens`
limit) and `big` (a random 79M Llama with the tiny tokenizer, as in
benchmarks/rollout_speed.py). For every run the table gives the truncation
rate and the long tail: the share of generation time after 90% of the
sequences had finished (`GenClock`). For `big`,
generation is forced to the full length on both sides: EOS is masked until
the limit (TRL: HF's `min_new_tokens` through GRPOConfig.generation_kwargs;
ours: the HF engine's `min_tokens`, the same rule in our decoding loop).

    .venv/bin/pip install -e ".[trl]"
    .venv/bin/python benchmarks/vs_trl.py                       # tiny and big
    .venv/bin/python benchmarks/vs_trl.py --models tiny --steps 6
    .venv/bin/python benchmarks/vs_trl.py --models longcot      # 256, 512 and 1024 new tokens
    .venv/bin/python benchmarks/vs_trl.py --curves --tiny 32,8,64 --schedule cosine --steps 60 \
        --plot docs/plots/vs_trl_curves.png     # the default job's batch and schedule, 3 seeds

`--curves`: learning curves instead of step times. For each seed, TRL and then
ours train the tiny reasoner for `--steps` steps at the same settings (the
same seed's prompt stream), untimed and not interleaved; both final models
are scored by our greedy held-out evaluation.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import torch

from rlreason.build import build
from rlreason.rewards.routing import Scorer
from rlreason.config import RewardTerm
from rlreason.config_load import load_config
from rlreason.policy import REPO_ROOT
from rlreason.rewards import REWARDS
from rlreason.tasks import TASKS
from rlreason.trainer import advantages, collect, timed, train_batch
from rlreason.types import Completion, Rollout, Sample
from rlreason.update import plan_for, update_policy

TINY = str(REPO_ROOT / "models" / "tiny-reasoner")
LONGCOT = str(REPO_ROOT / "models" / "tiny-longcot")
TASK_OF = {"tiny": "arithmetic", "big": "arithmetic", "longcot": "longcot_arith"}


def model_path(name: str, tmp: str) -> str:
    """The model folder of benchmark model `name` (tiny, big or longcot); `big` is built in `tmp`."""
    return {"tiny": TINY, "longcot": LONGCOT}.get(name) or big_model_dir(os.path.join(tmp, "big"))


class GenClock:
    """Times each model forward during generation, to measure the long tail: the share of a generate call's
    wall time spent after 90% of its sequences had finished (only the slowest 10% still running).

    Forward k (k = 0 the prefill) samples token k, so a sequence of L tokens has finished once forward L-1
    ends, i.e. when forward L starts. With L90 the length by which 90% of the sequences had finished, the
    tail runs from the start of forward L90 to the end of the call (0 when there is no such forward)."""

    def __init__(self, model):
        self.on, self.stamps, self.shares = False, [], []
        model.register_forward_pre_hook(self._tick)

    def _tick(self, *_):
        if self.on:
            self.stamps.append(time.perf_counter())

    def wrap(self, fn, lengths_of):
        """`fn` timed; `lengths_of(fn's result)` gives the generated lengths of the call's sequences."""
        def wrapper(*args, **kw):
            self.stamps, self.on = [time.perf_counter()], True
            try:
                out = fn(*args, **kw)
            finally:
                self.on = False
            self.shares.append(tail_share(self.stamps, time.perf_counter(), lengths_of(out)))
            return out
        return wrapper


def tail_share(stamps: List[float], end: float, lengths: List[int]) -> float:
    """stamps = [call start, forward 0 start, forward 1 start, ...]; see GenClock."""
    if not lengths or end <= stamps[0]:
        return 0.0
    l90 = sorted(lengths)[max(0, -(-9 * len(lengths) // 10) - 1)]
    return (end - stamps[1 + l90]) / (end - stamps[0]) if 1 + l90 < len(stamps) else 0.0


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

    def __init__(self, path: str, a, run_dir: str, extra: Sequence[str] = ()):
        over = [f"model.path={path}", "model.device=cpu", f"run.root={run_dir}", "run.name=ours", f"data.task={getattr(a, 'task', 'arithmetic')}",
                f"rollout.prompts_per_step={a.prompts}", f"rollout.group_size={a.group}",
                f"rollout.max_new_tokens={a.new_tokens}", "rollout.temperature=1.0", "rollout.engine=hf",
                f"train.lr={a.lr}", f"train.lr_schedule={getattr(a, 'schedule', 'constant')}", "algo.kl.coef=0.0", "algo.loss=ppo_clip", "algo.loss_agg=token_mean",
                f"train.micro_batch_size={a.prompts * a.group}", f"train.steps={a.steps}",
                f"run.seed={getattr(a, 'seed', 0)}", *extra]
        self.cfg = cfg = load_config(None, over)
        cfg.rewards = [RewardTerm(name="math_answer")]  # the one term TRL also computes (no format term)
        self.c = build(cfg)
        if a.full_length:
            self.c.engine.min_tokens = a.new_tokens  # no EOS before the limit (the same rule as HF's min_new_tokens)
        self.clock = GenClock(self.c.model)  # the HF engine samples from the policy model itself
        self.c.engine.generate = self.clock.wrap(self.c.engine.generate,
                                                 lambda r: [len(x.token_ids) for x in r.completions])
        self.times: List[float] = []
        self.perf: List[Dict[str, float]] = []
        self.lengths: List[float] = []
        self.truncated: List[float] = []
        self.rewards: List[float] = []
        self.tokens: List[Dict[str, int]] = []  # per step: prompt, generated, update (real) and padded tokens

    def step(self) -> None:
        cfg, c, a = self.cfg, self.c, self.cfg.algo
        c.step += 1
        perf: Dict[str, float] = {}
        t0 = time.perf_counter()
        scored, _, _ = collect(cfg, c, perf)
        with timed(perf, "logprobs"):  # one update per rollout, no reference: the engine's log-probs are old_logp
            batch, engine_logp, values = train_batch(cfg, c, scored)
        advantages(cfg, c, batch, scored, values)
        with timed(perf, "update"):
            plan = plan_for(batch, a, cfg.train)
            update_policy(c.model, c.opt, batch, cfg, engine_logp, plan)
            c.sched.step()
        with timed(perf, "sync"):
            c.engine.sync_weights(c.model)
        self.times.append(time.perf_counter() - t0)
        self.perf.append(perf)
        self.lengths.append(statistics.mean(len(x.token_ids) for x in scored.rollout.completions))
        self.truncated.append(statistics.mean(x.truncated for x in scored.rollout.completions))
        self.rewards.append(statistics.mean(scored.total))
        rows = batch.attention_mask.sum(-1)
        self.tokens.append({"prompt": sum(len(p) for p in scored.rollout.prompt_ids) * cfg.rollout.group_size,
                            "generated": sum(len(x.token_ids) for x in scored.rollout.completions),
                            "update": int(rows.sum()),
                            "padded": sum(len(m) * int(rows[m].max()) for step in plan for m in step)})


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


def trl_trainer(path: str, a, tmp: str, callbacks):
    """TRL's GRPOTrainer at the benchmark's settings, on the task stream of seed `a.seed` (ours draws the same)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    seed = getattr(a, "seed", 0)
    stream = TASKS.get(getattr(a, "task", "arithmetic"))({}, seed=seed).train_samples()  # what our uniform sampler draws, in order
    rows = [next(stream) for _ in range(a.prompts * a.steps)]
    data = Dataset.from_list([{"prompt": s.messages, "answer": s.answer} for s in rows])
    args = GRPOConfig(
        output_dir=os.path.join(tmp, "trl"), use_cpu=True, bf16=False, fp16=False, report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True, seed=seed, max_steps=a.steps,
        per_device_train_batch_size=a.prompts * a.group, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=a.group, max_completion_length=a.new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=a.lr, lr_scheduler_type=getattr(a, "schedule", "constant"), warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        beta=0.0, num_iterations=1, loss_type="dapo", shuffle_dataset=False, dataloader_num_workers=0,
        generation_kwargs={"min_new_tokens": a.new_tokens} if a.full_length else None,
    )
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return GRPOTrainer(model=model, reward_funcs=trl_reward, args=args, train_dataset=data, processing_class=tok,
                       callbacks=callbacks)


def run_model(name: str, path: str, a, tmp: str) -> dict:
    from transformers import TrainerCallback

    ours = Ours(path, a, tmp)
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

    trainer = trl_trainer(path, a, tmp, [Interleave()])
    model = trainer.model
    trl_perf: List[Dict[str, float]] = []
    for meth, stage in (("_generate", "generate"), ("_calculate_rewards", "reward"),
                        ("_generate_and_score_completions", "rollout_total")):  # TRL's breakdown: timed wrappers
        setattr(trainer, meth, _timed_method(getattr(trainer, meth), stage, trl_perf))
    trl_clock = GenClock(model)  # TRL's _generate returns (prompt_ids, completion_ids, ...)
    trainer._generate = trl_clock.wrap(trainer._generate, lambda out: [len(c) for c in out[1]])
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
            "trl_times": trl_times, "ours_times": ours.times, "new_tokens": a.new_tokens,
            "trl_tail": statistics.median(trl_clock.shares[w:]), "ours_tail": statistics.median(ours.clock.shares[w:]),
            "trl_trunc": statistics.mean(x.get("completions/clipped_ratio", 0.0) for x in trl_logs[w:]) if trl_logs else None,
            "ours_trunc": statistics.mean(ours.truncated[w:])}


def held_out_accuracy(model, tok, n: int, new_tokens: int) -> float:
    """Greedy accuracy of `model` on the first `n` held-out arithmetic problems (our evaluate, HF engine)."""
    from rlreason.evaluate import evaluate
    from rlreason.rollout.hf import HFEngine

    task = TASKS.get("arithmetic")({}, seed=0)
    m = evaluate(HFEngine(model, tok), task.eval_samples(n), Scorer.for_all([RewardTerm(name="math_answer")]).correct,
                 new_tokens)
    return m["eval/accuracy"]


def learning_curves(a, tmp: str) -> List[dict]:
    """Per seed: TRL then ours, `a.steps` steps each on the tiny reasoner (not interleaved, untimed), then both
    final models' greedy held-out accuracy; per-step mean training reward of both."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    tok = AutoTokenizer.from_pretrained(TINY)
    before = held_out_accuracy(AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32), tok, a.eval_size,
                               a.new_tokens)
    out = []
    for seed in a.seed_list:
        a.seed = seed
        logs: List[dict] = []

        class Logs(TrainerCallback):
            def on_log(self, args, state, control, logs_=None, **kw):
                logs.append(dict(kw.get("logs") or logs_ or {}))

        torch.manual_seed(seed)
        t0 = time.perf_counter()
        trainer = trl_trainer(TINY, a, os.path.join(tmp, f"trl{seed}"), [Logs()])
        torch.set_num_threads(a.threads)
        trainer.train()
        trl_s = time.perf_counter() - t0
        trl_acc = held_out_accuracy(trainer.model, tok, a.eval_size, a.new_tokens)
        t0 = time.perf_counter()
        ours = Ours(TINY, a, os.path.join(tmp, f"ours{seed}"))
        for _ in range(a.steps):
            ours.step()
        ours_s = time.perf_counter() - t0
        our_acc = held_out_accuracy(ours.c.model, tok, a.eval_size, a.new_tokens)
        trl_reward = [float(x["reward"]) for x in logs if "reward" in x]
        out.append({"seed": seed, "before": before, "trl_acc": trl_acc, "ours_acc": our_acc, "trl_reward": trl_reward,
                    "ours_reward": ours.rewards, "trl_s": trl_s, "ours_s": ours_s})
        print(f"  seed {seed}: held-out {before:.3f} -> TRL {trl_acc:.3f} ({trl_s:.0f} s) | ours {our_acc:.3f} "
              f"({ours_s:.0f} s)", flush=True)
    return out


def report_curves(res: List[dict], a) -> None:
    def ms(xs):
        return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"

    print(f"\n{a.steps} steps of {a.prompts} prompts x G={a.group}, lr {a.lr} {a.schedule}, greedy held-out accuracy on {a.eval_size} problems "
          f"(before RL: {res[0]['before']:.3f})\n")
    print("| seed | TRL | ours | TRL wall s | ours wall s |\n|---|---|---|---|---|")
    for r in res:
        print(f"| {r['seed']} | {r['trl_acc']:.3f} | {r['ours_acc']:.3f} | {r['trl_s']:.0f} | {r['ours_s']:.0f} |")
    print(f"| mean ± std | {ms([r['trl_acc'] for r in res])} | {ms([r['ours_acc'] for r in res])} | "
          f"{statistics.mean(r['trl_s'] for r in res):.0f} | {statistics.mean(r['ours_s'] for r in res):.0f} |")
    for r in res:
        print(f"# seed {r['seed']} TRL reward/step: {[round(x, 3) for x in r['trl_reward']]}")
        print(f"# seed {r['seed']} ours reward/step: {[round(x, 3) for x in r['ours_reward']]}")
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for key, label, color in (("trl_reward", "TRL GRPOTrainer", "tab:orange"), ("ours_reward", "rlreason", "tab:blue")):
            curves = torch.tensor([r[key][: a.steps] for r in res])  # [seeds, steps]
            x = torch.arange(1, curves.shape[1] + 1)
            ax.plot(x, curves.mean(0), color=color, label=f"{label} (mean of {len(res)} seeds)")
            ax.fill_between(x, curves.min(0).values, curves.max(0).values, color=color, alpha=0.2)
        ax.set_xlabel("step")
        ax.set_ylabel("mean training reward (math_answer)")
        ax.set_title("tiny reasoner, equal settings: training reward (band: min-max over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
        print(f"# plot: {a.plot}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,big", help="comma list of tiny,big,longcot")
    p.add_argument("--steps", type=int, default=12, help="steps per side, warm-up included")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: this 2-core machine is shared)")
    p.add_argument("--lr", type=float, default=1.5e-4)
    p.add_argument("--schedule", default="constant", choices=["constant", "linear", "cosine"],
                   help="LR schedule on both sides (ours train.lr_schedule, TRL lr_scheduler_type)")
    p.add_argument("--tiny", default="16,8,64", help="prompts,group,new_tokens for tiny (EOS allowed)")
    p.add_argument("--big", default="4,4,64", help="prompts,group,new_tokens for big (full length forced)")
    p.add_argument("--longcot", default="8,8", help="prompts,group for longcot (models/tiny-longcot, EOS allowed)")
    p.add_argument("--longcot-tokens", default="256,512,1024", help="longcot: max new tokens, one run each")
    p.add_argument("--curves", action="store_true", help="learning curves on the tiny task instead of step times")
    p.add_argument("--seeds", default="0,1,2", help="--curves: seeds (each trains both sides)")
    p.add_argument("--eval-size", type=int, default=256, help="--curves: held-out problems")
    p.add_argument("--plot", default="", help="--curves: PNG of the training-reward curves")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import transformers
    import trl

    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"{a.threads} thread(s), load average at start {os.getloadavg()}", flush=True)
    results = []
    if a.curves:
        a.prompts, a.group, a.new_tokens = (int(x) for x in a.tiny.split(","))
        a.full_length, a.seed_list = False, [int(x) for x in a.seeds.split(",")]
        with tempfile.TemporaryDirectory() as tmp:
            report_curves(learning_curves(a, tmp), a)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            spec = getattr(a, name).split(",")
            a.prompts, a.group = int(spec[0]), int(spec[1])
            a.task, a.full_length = TASK_OF[name], name == "big"
            path = model_path(name, tmp)
            for new_tokens in (a.longcot_tokens if name == "longcot" else spec[2]).split(","):
                a.new_tokens = int(new_tokens)
                print(f"## {name}: {a.prompts} prompts x G={a.group}, {a.new_tokens} new tokens"
                      f"{' (forced)' if a.full_length else ''}", flush=True)
                results.append(run_model(name, path, a, os.path.join(tmp, f"{name}{a.new_tokens}")))
    print(f"# load average at end {os.getloadavg()}")
    print("| model | new tokens | params | steps | TRL median s | ours median s | TRL/ours "
          "| mean completion tokens (TRL / ours) | truncated (TRL / ours) | long-tail share of generate (TRL / ours) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        trunc = "-" if r["trl_trunc"] is None else f"{r['trl_trunc']:.1%}"
        print(f"| {r['model']} | {r['new_tokens']} | {r['params'] / 1e6:.2f}M | {r['n']} | {r['trl_s']:.2f} | "
              f"{r['ours_s']:.2f} | {r['ratio']:.2f}x | "
              f"{r['trl_len'] if r['trl_len'] is None else round(r['trl_len'], 1)} / {r['ours_len']:.1f} | "
              f"{trunc} / {r['ours_trunc']:.1%} | {r['trl_tail']:.0%} / {r['ours_tail']:.0%} |")
    print("\n| model | new tokens | side | generate s | reward s | batch prep s | update (+sync) s |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        t, s, n = r["trl_stages"], r["ours_stages"], r["new_tokens"]
        print(f"| {r['model']} | {n} | TRL | {t['generate']:.2f} | {t['reward']:.3f} | {t['other']:.3f} | {t['update']:.2f} |")
        print(f"| {r['model']} | {n} | ours | {s.get('generate', 0):.2f} | {s.get('reward', 0):.3f} | "
              f"{s.get('logprobs', 0):.3f} | {s.get('update', 0) + s.get('sync', 0):.2f} |")
    for r in results:
        print(f"# {r['model']}@{r['new_tokens']} raw TRL step s: {[round(x, 2) for x in r['trl_times']]}")
        print(f"# {r['model']}@{r['new_tokens']} raw ours step s: {[round(x, 2) for x in r['ours_times']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
