"""A row -> chat messages -> text, with the tokenizer's own chat template.

The prompt is a system prompt, a user turn, then the SQL as the assistant turn. The user turn
has two layouts (`format.layout`):
- `reference`, as the reference example shapes it: `Task: ...\\nSQL table: ...\\nSQL query: `;
- `schema_first`, as OmniSQL, DAIL-SQL and CodeS lay it out: `SQL table: ...\\nTask: ...\\nSQL query: `.
  Rows of one database then share their prompt up to the question, so a batch of them computes
  the schema once (model/loss.py, evaluate.py; batches.py groups the rows).

Templates differ in what they accept. Rather than keying on model names, we ask the template:
if rendering a system turn raises (Mistral's does: "roles must alternate") or silently drops
the system text, the system prompt is folded into the user turn. A tokenizer with no template
gets ChatML.
"""

from __future__ import annotations

from typing import Any

from sqltune.errors import ConfigError

LAYOUTS = {
    "reference": "Task: {instruction}\nSQL table: {input}\nSQL query: ",
    "schema_first": "SQL table: {input}\nTask: {instruction}\nSQL query: ",
}
DEFAULT_LAYOUT = "schema_first"
# With `format.examples`: solved similar questions between the schema and the answer (data/examples.py)
EXAMPLE_TEMPLATE = "Example task: {question}\nExample SQL query: {sql}\n"
# eval.repair: after the model's failed query (an assistant turn), the next user turn
REPAIR_TEMPLATE = "That SQL query failed: {error}\nWrite the corrected SQL query."

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> Any:
    """Give a tokenizer without a chat template the ChatML one (in place)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


_ACCEPTS_SYSTEM: dict[tuple[int, str], bool] = {}


def accepts_system_role(tokenizer: Any) -> bool:
    """True if the template renders a system turn and keeps its text."""
    key = (id(tokenizer), tokenizer.chat_template)
    if key in _ACCEPTS_SYSTEM:
        return _ACCEPTS_SYSTEM[key]
    probe = "SQLTUNE-SYSTEM-PROBE"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": probe}, {"role": "user", "content": "q"}], tokenize=False
        )
        ok = probe in text
    except Exception:  # jinja2 TemplateError, or raise_exception() inside the template
        ok = False
    _ACCEPTS_SYSTEM[key] = ok
    return ok


def user_text(row: dict[str, Any], layout: str = DEFAULT_LAYOUT) -> str:
    """The user turn in `layout`, with the row's `examples` (if any) before the question in
    `schema_first` (they depend on the question, the schema doesn't), before the answer in `reference`."""
    shots = "".join(EXAMPLE_TEMPLATE.format(**e) for e in row.get("examples") or ())
    template = LAYOUTS[layout]
    if shots:
        at = template.index("Task: ") if layout == "schema_first" else template.rindex("SQL query: ")
        template = template[:at] + shots.replace("{", "{{").replace("}", "}}") + template[at:]
    return template.format(instruction=row["instruction"], input=row["input"])


def messages(row: dict[str, Any], system_prompt: str, *, fold_system: bool, answer: bool,
             layout: str = DEFAULT_LAYOUT) -> list[dict[str, str]]:
    user = user_text(row, layout)
    if fold_system and system_prompt:
        msgs = [{"role": "user", "content": f"{system_prompt}\n\n{user}"}]
    elif system_prompt:
        msgs = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]
    else:
        msgs = [{"role": "user", "content": user}]
    if row.get("repair"):  # evaluate's repair round: the failed query, its error, then a new answer
        msgs += [{"role": "assistant", "content": row["repair"]["sql"]},
                 {"role": "user", "content": REPAIR_TEMPLATE.format(error=row["repair"]["error"])}]
    if answer:
        msgs.append({"role": "assistant", "content": str(row["response"]).strip()})
    return msgs


def render(row: dict[str, Any], tokenizer: Any, system_prompt: str, layout: str = DEFAULT_LAYOUT) -> tuple[str, str]:
    """(prompt, completion): the prompt ends with the generation prompt; prompt + completion is
    the whole conversation as the template renders it, the end-of-turn token included."""
    fold = not accepts_system_role(tokenizer)
    prompt = tokenizer.apply_chat_template(
        messages(row, system_prompt, fold_system=fold, answer=False, layout=layout), tokenize=False,
        add_generation_prompt=True,
    )
    full = tokenizer.apply_chat_template(
        messages(row, system_prompt, fold_system=fold, answer=True, layout=layout), tokenize=False
    )
    if not full.startswith(prompt):
        # Some templates render the last assistant turn differently from the generation prompt.
        raise ConfigError([  # a user-fixable tokenizer choice, not our bug
            "hyperparameters.model.tokenizer: its chat template's prompt rendered with add_generation_prompt=True is not a prefix of the "
            f"full conversation, so completion-only labels can't be placed.\nprompt: {prompt!r}\nfull: {full!r}"
        ])
    return prompt, full[len(prompt):]


def prompt_text(row: dict[str, Any], tokenizer: Any, system_prompt: str, layout: str = DEFAULT_LAYOUT) -> str:
    """Prompt only, ending with the generation prompt: what inference feeds the model."""
    fold = not accepts_system_role(tokenizer)
    return tokenizer.apply_chat_template(
        messages(row, system_prompt, fold_system=fold, answer=False, layout=layout), tokenize=False,
        add_generation_prompt=True,
    )


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn: the template's end marker if it is one token, and EOS."""
    ids = []
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid is not None:
            ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
