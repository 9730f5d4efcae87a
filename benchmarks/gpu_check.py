"""The project's GPU evidence in one run (called by benchmarks/gpu_check.sh; see that file for the how).

On a CUDA machine with torch and transformers (no network, no vLLM) it:
1. runs the `gpu`-marked tests;
2. builds a randomly initialised model shaped like Qwen2.5-0.5B (hidden 896, 24 layers, 14 heads / 2 KV
   heads, MLP 4864, vocabulary 151,936, tied embeddings; a Llama-architecture module, which differs from
   Qwen2 only by the q/k/v biases) with the project's character tokenizer;
3. trains it `--steps` RL steps (default 20) in bf16 (fp32 master weights, bf16 autocast) with gradient
   checkpointing, token-budget micro-batches and the HF engine, on GSM8K-format prompts;
4. writes `gpu_check.json` and `gpu_check.md` into OUT: device, versions, test counts, step time (mean
   after the first step, and per stage), generated tokens/s, peak GPU memory, engine-trainer mismatch.
FSDP2 needs WORLD_SIZE >= 2 in rlreason (one rank is a plain process), so one GPU reports it as not run.

`--cpu-dry-run` does the same on CPU with tiny sizes and 2 steps (the test suite runs it).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
QWEN05 = dict(hidden_size=896, layers=24, heads=14, kv_heads=2, intermediate_size=4864, vocab=151936, positions=4096)
TINY = dict(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128, vocab=512, positions=512)


def build_model(out: Path, shape: dict, seed: int = 0) -> Path:
    """A randomly initialised causal LM of `shape` with the project's tokenizer, saved to `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlreason.tinymodel import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=max(shape["vocab"], len(tok)), hidden_size=shape["hidden_size"],
                         num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                         num_key_value_heads=shape["kv_heads"], intermediate_size=shape["intermediate_size"],
                         max_position_embeddings=shape["positions"], tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


GPU_TEST_FILES = ["tests/test_precision.py"]  # the gpu-marked tests that need no vLLM (absent on the GPU machine)


def gpu_tests() -> dict:
    """Counts of the `gpu`-marked tests (pytest's summary line)."""
    done = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           *GPU_TEST_FILES], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    tail = [x for x in done.stdout.splitlines() if x.strip()][-1:] or ["(no output)"]
    return {"exit_status": done.returncode, "summary": tail[0]}


def train_run(out: Path, model_dir: Path, a) -> dict:
    """`a.steps` RL steps in bf16; returns the run's step-time, throughput, memory and mismatch numbers."""
    from rlreason import load_config, train

    cuda = torch.cuda.is_available() and not a.cpu_dry_run
    cfg = load_config(None, [
        f"model.path={model_dir}", "model.dtype=bfloat16", f"model.device={'cuda' if cuda else 'cpu'}",
        "model.gradient_checkpointing=true", "rollout.engine=hf", f"rollout.prompts_per_step={a.prompts}",
        f"rollout.group_size={a.group}", f"rollout.max_new_tokens={a.new_tokens}", "rollout.temperature=1.0",
        "data.task=jsonl", "data.params={path: tests/data/gsm8k_train.jsonl, preset: gsm8k}", "data.eval_size=0",
        "data.template=chat", f"train.steps={a.steps}", "train.lr=1e-6", f"train.micro_batch_tokens={a.budget}",
        f"train.micro_batch_size={a.prompts * a.group}", f"run.root={out / 'runs'}", "run.name=bf16",
        "log.progress=false", "run.overwrite=true"])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    train(cfg)
    wall = time.time() - t0
    rows = [json.loads(x) for x in (out / "runs" / "bf16" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "perf/step_s" in r]
    later = steps[1:] or steps  # the first step pays for warm-up
    mean = lambda key: sum(r.get(key, 0.0) for r in later) / len(later)  # noqa: E731
    return {
        "steps": len(steps), "wall_s": round(wall, 1), "step_s_mean_after_first": round(mean("perf/step_s"), 3),
        "stage_s": {k[5:-2]: round(mean(k), 3) for k in later[0]
                    if k.startswith("perf/") and k.endswith("_s") and k not in ("perf/step_s", "perf/tokens_per_s")},
        "generated_tokens_per_s": round(mean("perf/tokens_per_s"), 1),
        "response_length": round(mean("rollout/response_length"), 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "engine_logprob_abs_diff_mean": mean("policy/engine_logprob_abs_diff_mean"),
        "engine_logprob_abs_diff_max": max(r.get("policy/engine_logprob_abs_diff_max", 0.0) for r in steps),
        "engine_ratio_max": max(r.get("policy/engine_ratio_max", 1.0) for r in steps),
        "engine_ratio_min": min(r.get("policy/engine_ratio_min", 1.0) for r in steps),
        "loss_finite": all(r.get("loss/total") == r.get("loss/total") for r in steps),
    }


def markdown(report: dict) -> str:
    r, t = report, report["train"]
    lines = [f"# GPU check ({'CPU dry run' if r['cpu_dry_run'] else 'CUDA'})", "",
             f"- date: {r['date']}; device: {r['device']}; torch {r['torch']}; transformers {r['transformers']}",
             f"- command: `{r['command']}`",
             f"- gpu-marked tests: {r['gpu_tests']['summary']} (exit {r['gpu_tests']['exit_status']})",
             f"- model: {r['model']}", "",
             "| measure | value |", "|---|---|"]
    for k, v in t.items():
        lines.append(f"| {k} | {v} |")
    lines += ["", f"FSDP2: {r['fsdp2']}", ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes, 2 steps, on CPU")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=192)
    p.add_argument("--budget", type=int, default=16384, help="train.micro_batch_tokens")
    a = p.parse_args()
    if a.cpu_dry_run:
        a.steps, a.prompts, a.group, a.new_tokens, a.budget = 2, 2, 2, 16, 256
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --cpu-dry-run on CPU)", file=sys.stderr)
        return 2
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    shape = TINY if a.cpu_dry_run else QWEN05
    import transformers

    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_dry_run": a.cpu_dry_run,
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() and not a.cpu_dry_run
              else platform.processor() or "cpu",
              "torch": torch.__version__, "transformers": transformers.__version__,
              "command": " ".join(["benchmarks/gpu_check.sh"] + sys.argv[1:]),
              "gpu_tests": gpu_tests(),
              "model": f"random Llama-architecture, shape {shape}, bf16 compute over fp32 masters"}
    report["train"] = train_run(out, build_model(out / "model", shape), a)
    report["fsdp2"] = "not run: rlreason shards with FSDP2 only when WORLD_SIZE >= 2 (one GPU here)"
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["train"]["loss_finite"] else 1


if __name__ == "__main__":
    sys.exit(main())
