"""Config: schema <- YAML <- overrides, one-line errors naming key and file, cross-field validation."""
import pytest
import yaml

from rlreason.config import Config
from rlreason.errors import ConfigError
from rlreason.config_load import field_docs, load_config, to_yaml
from rlreason.policy import REPO_ROOT
from rlreason.sft_config import SFTConfig
from rlreason.tasks.mixture import build_task


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_defaults_validate_and_merge_order(tmp_path):
    path = write(tmp_path, "rollout:\n  group_size: 4\ntrain:\n  lr: 0.001\n")
    cfg = load_config(path, ["train.lr=0.002"])
    assert isinstance(cfg, Config)
    assert cfg.rollout.group_size == 4  # from the file
    assert cfg.train.lr == 0.002  # override beats the file
    assert cfg.rollout.temperature == 1.0  # schema default


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = write(tmp_path, "algo:\n  cliplow: 0.3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert path in msg and "algo.cliplow" in msg and "\n" not in msg


def test_wrong_type_in_yaml(tmp_path):
    path = write(tmp_path, "rollout:\n  group_size: eight\n")
    with pytest.raises(ConfigError, match="rollout.group_size") as e:
        load_config(path)
    assert path in str(e.value)


def test_unknown_override_key_and_malformed_override():
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'"):
        load_config(None, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.lr"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1, 2\n"))


@pytest.mark.parametrize("text, kind", [
    ("- train\n- rollout\n", "a list"),
    ("42\n", "a number"),
    ("train.lr=0.1\n", "a string"),
])
def test_config_file_not_a_mapping_is_one_line(tmp_path, text, kind):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: expected a mapping of keys at the top, got {kind}"


def test_base_config_not_a_mapping_names_both_files(tmp_path):
    base = write(tmp_path, "- a\n", "base.yaml")
    child = write(tmp_path, "base: base.yaml\ntrain:\n  lr: 0.1\n", "child.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(child)
    assert str(e.value) == f"{base}: expected a mapping of keys at the top, got a list (the base of {child})"
    assert load_config(write(tmp_path, "{}\n", "braces.yaml")) == Config()  # an empty mapping is a mapping
    assert load_config(write(tmp_path, "# only a comment\n", "comment.yaml")) == Config()  # no keys: defaults
    assert load_config(write(tmp_path, "", "empty.yaml")) == Config()


@pytest.mark.parametrize(
    "override, key",
    [
        ("rollout.group_size=1", "rollout.group_size"),  # group baseline needs >= 2 samples
        ("data.task=nope", "data.task"),
        ("algo.advantage=nope", "algo.advantage"),
        ("algo.loss=nope", "algo.loss"),
        ("algo.kl.estimator=k9", "algo.kl.estimator"),
        ("rollout.temperature=0", "rollout.temperature"),
        ("rollout.top_p=1.5", "rollout.top_p"),
        ("algo.clip_low=1.0", "algo.clip_low"),
        ("train.lr=0", "train.lr"),
        ("train.lr_schedule=step", "train.lr_schedule"),
        ("model.dtype=int8", "model.dtype"),
        ("data.params.digits=3", "data.params"),
        ("data.params.min_digits=5", "data.params"),  # min > max
        ("algo.ppo_epochs=0", "algo.ppo_epochs"),
    ],
)
def test_cross_field_rules(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert key in str(e.value)


def test_group_size_one_is_fine_without_group_baseline_message():
    with pytest.raises(ConfigError, match="group baseline"):
        load_config(None, ["rollout.group_size=1"])


def test_reward_terms_checked(tmp_path):
    path = write(tmp_path, "rewards:\n  - name: math_answer\n    params: {bogus: 1}\n")
    with pytest.raises(ConfigError, match=r"rewards\[0\].params.*bogus"):
        load_config(path)
    path = write(tmp_path, "rewards:\n  - name: nope\n", "d.yaml")
    with pytest.raises(ConfigError, match=r"rewards\[0\].name"):
        load_config(path)


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(None, ["train.lr=0.003", "rollout.group_size=4", "data.params.max_digits=3"])
    again = load_config(write(tmp_path, to_yaml(cfg)))
    assert again == cfg


def test_every_field_has_a_docstring():
    for schema in (Config, SFTConfig):
        missing = [key for key, _, doc in field_docs(schema) if not doc]
        assert not missing, f"fields without a docstring: {missing}"


def test_sft_schema(tmp_path):
    cfg = load_config(write(tmp_path, "steps: 7\nhidden_size: 64\nheads: 4\n"), schema=SFTConfig)
    assert cfg.steps == 7 and cfg.hidden_size == 64
    with pytest.raises(ConfigError, match="heads"):
        load_config(None, ["hidden_size=30", "heads=4"], schema=SFTConfig)


def test_shipped_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "configs"
    for p in sorted(root.glob("*.yaml")):
        schema = SFTConfig if p.name.startswith("sft") else Config
        load_config(str(p), schema=schema)


@pytest.mark.parametrize("name", ["gsm8k_qwen", "math_r1zero", "reasoning_gym_mix", "default"])
def test_shipped_configs_validate_without_download(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(str(REPO_ROOT / "configs" / f"{name}.yaml"))
    assert cfg.run.name == ("" if name == "default" else name)  # the default job gets a new directory each time
    if name == "math_r1zero":
        assert cfg.data.template == "r1_zero" and cfg.data.params["preset"] == "math"
    if name == "gsm8k_qwen":
        assert cfg.data.template == "chat" and cfg.model.path == "Qwen/Qwen2.5-1.5B-Instruct"
    if name == "reasoning_gym_mix":
        assert [m.name or m.task for m in cfg.data.mixture] == ["sums", "calc", "arithmetic"]
        task = build_task(cfg.data, 0)  # procedural: builds with no download
        assert {s.task for s in task.eval_samples(4)} == {"sums", "calc", "arithmetic"}


SHIPPED_CONFIGS = sorted(p for p in (REPO_ROOT / "configs").rglob("*.yaml")  # RL configs: sweep and SFT files aside
                         if not {"grid", "list", "out"} & set(yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_shipped_config_is_consistent(path, monkeypatch):
    """Each shipped training config loads and gives no advice: its token budget holds a prompt + response,
    GPU configs use vLLM and bf16."""
    from rlreason.config_validate import advice

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert advice(load_config(str(path))) == []


def test_advice_names_the_key(caplog):
    from rlreason.config_validate import advice

    cfg = load_config(None, ["data.max_prompt_tokens=400", "rollout.max_new_tokens=768", "model.device=cuda"])
    assert advice(cfg) == [
        "train.micro_batch_tokens: 1024 is below one prompt + response (400 + 768 tokens): the longest rows go "
        "one per micro-batch", "model.dtype: float32 on a GPU; bfloat16 (fp32 master weights, bf16 compute) is "
        "the usual choice"]
    assert "config + overrides: train.micro_batch_tokens: 1024 is below" in caplog.text  # logged at load time


def test_reward_lists_that_cannot_run_are_refused_at_load_time():
    with pytest.raises(ConfigError, match="rewards: reward term 'kimi_length' decides correctness here"):
        load_config(None, ["rewards=[{name: kimi_length}]"])
    with pytest.raises(ConfigError, match=r"data.mixture\[0\].rewards: reward term 'format' is listed twice"):
        load_config(None, ["data.mixture=[{task: arithmetic, rewards: [{name: format}, {name: format}]}]"])


def test_switching_the_task_drops_the_earlier_tasks_params():
    """The hf params of configs/gsm8k_qwen.yaml do not leak into a jsonl task chosen by override, in any order;
    params given for the same task still merge."""
    local = ["data.params.path=tests/data/gsm8k_train.jsonl", "data.params.preset=gsm8k",
             "data.params.eval_path=tests/data/gsm8k_test.jsonl"]
    for overrides in (["data.task=jsonl", *local], [*local, "data.task=jsonl"]):
        cfg = load_config("configs/gsm8k_qwen.yaml", overrides)
        assert cfg.data.task == "jsonl" and set(cfg.data.params) == {"path", "preset", "eval_path"}
    assert load_config("configs/gsm8k_qwen.yaml", ["data.params.split=test"]).data.params["name"] == "openai/gsm8k"


@pytest.mark.parametrize("overrides, key", [
    (["rollout.partial_tokens=-1"], "rollout.partial_tokens"),
    (["rollout.partial_max_steps=0"], "rollout.partial_max_steps"),
    (["rollout.partial_groups=3", "rollout.prompts_per_step=4"], "rollout.partial_groups"),
    (["rollout.partial_tokens=64", "rollout.tools=[python]"], "rollout.partial_tokens"),
    (["rollout.partial_tokens=64", "rollout.engine=vllm", "rollout.stop=[x]"], "rollout.partial_tokens"),
    (["rollout.partial_tokens=64", "algo.dynamic_sampling=true"], "algo.dynamic_sampling"),
    (["rollout.max_staleness=-1"], "rollout.max_staleness"),
    (["rollout.max_staleness=1", "rollout.partial_tokens=64"], "rollout.max_staleness"),
    (["rollout.max_staleness=1", "rollout.sleep_level=1"], "rollout.sleep_level"),
    (["rollout.max_staleness=1", "algo.dynamic_sampling=true"], "algo.dynamic_sampling"),
])
def test_partial_and_async_rollout_rules(overrides, key, monkeypatch):
    import rlreason.rollout as rollout

    monkeypatch.setattr(rollout, "vllm_installed", lambda: True)
    assert load_config(None, ["rollout.partial_tokens=64"]).rollout.partial_tokens == 64
    assert load_config(None, ["rollout.max_staleness=2"]).rollout.max_staleness == 2
    with pytest.raises(ConfigError, match=key) as e:
        load_config(None, overrides)
    assert "\n" not in str(e.value)
