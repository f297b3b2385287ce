"""Chat templates that accept a system turn, reject it, or are missing; labels mask the prompt."""

from __future__ import annotations

import pytest
import transformers

from sqltune import prompts
from sqltune import model
from sqltune import tokens
from sqltune.config import ModelSettings

ROW = {"instruction": "How many singers?", "input": "CREATE TABLE singer (id INT)", "response": "SELECT COUNT(*) FROM singer"}
SYSTEM = "You write SQL."
USER = "SQL table: CREATE TABLE singer (id INT)\nTask: How many singers?\nSQL query: "  # the default layout, schema_first

# Mistral-7B-Instruct-v0.2's template in essence: no system role, strict alternation.
MISTRAL_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


@pytest.fixture(scope="module")
def smol() -> transformers.PreTrainedTokenizerBase:
    return model.load_tokenizer(ModelSettings(name="smollm2"))


def test_template_with_system_role_keeps_it(smol) -> None:
    assert prompts.accepts_system_role(smol)
    prompt, completion = prompts.render(ROW, smol, SYSTEM)
    assert prompt == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert completion == "SELECT COUNT(*) FROM singer<|im_end|>\n"


def test_template_rejecting_system_role_gets_it_folded_into_the_user_turn(smol) -> None:
    t = transformers.AutoTokenizer.from_pretrained(model.smollm2_folder())
    t.chat_template = MISTRAL_LIKE
    assert not prompts.accepts_system_role(t)
    prompt, completion = prompts.render(ROW, t, SYSTEM)
    assert prompt == f"{t.bos_token}[INST] {SYSTEM}\n\n{USER} [/INST]"
    assert completion == f"SELECT COUNT(*) FROM singer{t.eos_token}"


def test_tokenizer_without_template_gets_chatml(smol) -> None:
    t = transformers.AutoTokenizer.from_pretrained(model.smollm2_folder())
    t.chat_template = None
    prompts.ensure_chat_template(t)
    prompt, completion = prompts.render(ROW, t, SYSTEM)
    assert prompt == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n"
                      "<|im_start|>assistant\n")
    assert completion == "SELECT COUNT(*) FROM singer<|im_end|>\n"


def test_labels_mask_exactly_the_prompt_tokens(smol) -> None:
    enc = tokens.encode(ROW, smol, SYSTEM, max_length=2048)
    prompt, completion = prompts.render(ROW, smol, SYSTEM)
    n_prompt = len(smol(prompt, add_special_tokens=False)["input_ids"])
    assert enc["labels"][:n_prompt] == [tokens.IGNORE] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert all(label != tokens.IGNORE for label in enc["labels"][n_prompt:])
    assert smol.decode(enc["input_ids"][n_prompt:]) == completion  # the answer and its end-of-turn token
    assert smol.convert_tokens_to_ids("<|im_end|>") in enc["labels"][n_prompt:]


def test_truncation_counts_and_drops_samples_without_answer(smol, caplog) -> None:
    import datasets

    long = {**ROW, "input": "CREATE TABLE t (" + ", ".join(f"c{i} INT" for i in range(200)) + ")"}
    ds = datasets.Dataset.from_list([ROW, long])
    n_short = len(tokens.encode(ROW, smol, SYSTEM, 4096)["input_ids"])
    with caplog.at_level("WARNING"):
        out = tokens.tokenize_split(ds, smol, SYSTEM, max_length=n_short + 5, name="t")
    assert len(out) == 1  # the long prompt alone exceeds max_length: dropped
    assert "1 of 2 samples truncated" in caplog.text and "1 lost all of it" in caplog.text


def test_collator_pads_right_with_minus_100_labels() -> None:
    batch = tokens.Collator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_a_repair_turn_shows_the_failed_query_and_its_error() -> None:
    from sqltune import prompts

    row = {"instruction": "Names?", "input": "CREATE TABLE singer (name TEXT)", "response": "SELECT name FROM singer",
           "repair": {"sql": "SELECT nme FROM singer", "error": "OperationalError: no such column: nme"}}
    msgs = prompts.messages(row, "sys", fold_system=False, answer=False)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "SELECT nme FROM singer"
    assert msgs[3]["content"] == prompts.REPAIR_TEMPLATE.format(error="OperationalError: no such column: nme")
