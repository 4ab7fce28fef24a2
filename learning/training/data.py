"""Tokenising SFT pairs with a response-only loss mask; length-bucketed batches or packed rows."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens: the loss covers the response only
    text: str

    @property
    def response_tokens(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    if getattr(tokenizer, "chat_template", None):
        try:
            return str(
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
            )
        except Exception:  # a template that rejects these messages: fall back like the reference
            pass
    text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages)
    return text + ("<|assistant|>\n" if add_generation_prompt else "")


def prompt_text(tokenizer: Any, prompt: str) -> str:
    return _render(tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True)


def encode_pair(tokenizer: Any, pair: dict[str, Any], max_seq_length: int) -> Example | None:
    """Prompt + response as token ids; labels mask the prompt. None when no response token fits."""
    prompt = prompt_text(tokenizer, str(pair.get("input", "")))
    full = _render(
        tokenizer,
        [
            {"role": "user", "content": str(pair.get("input", ""))},
            {"role": "assistant", "content": str(pair.get("output", ""))},
        ],
        add_generation_prompt=False,
    )
    if not full.startswith(prompt):  # templates that do not extend the prompt: mask by rendered prompt text
        full = prompt + str(pair.get("output", "")) + (tokenizer.eos_token or "")
    elif tokenizer.eos_token and not full.rstrip().endswith(tokenizer.eos_token):
        full = full + tokenizer.eos_token
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    n_prompt = len(prompt_ids) if full_ids[: len(prompt_ids)] == prompt_ids else _common_prefix(prompt_ids, full_ids)
    full_ids = full_ids[:max_seq_length]
    labels = [IGNORE_INDEX] * min(n_prompt, len(full_ids)) + full_ids[n_prompt:]
    if all(t == IGNORE_INDEX for t in labels):
        return None
    return Example(list(full_ids), labels, full)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def bucket_batches(
    examples: list[Example], *, tokens_per_batch: int, max_batch_size: int, rng: random.Random | None = None
) -> list[list[Example]]:
    """Group examples of similar length; each batch pads to its longest member within the token budget.

    Sorting by length keeps padding small; the batch order is shuffled (with ``rng``) so training does
    not see lengths in order.
    """
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    batches: list[list[Example]] = []
    current: list[Example] = []
    longest = 0
    for i in order:
        ex = examples[i]
        n = len(ex.input_ids)
        if current and (max(longest, n) * (len(current) + 1) > tokens_per_batch or len(current) >= max_batch_size):
            batches.append(current)
            current, longest = [], 0
        current.append(ex)
        longest = max(longest, n)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def pack_rows(
    examples: list[Example], *, row_length: int, rows_per_batch: int, rng: random.Random | None = None
) -> list[list[list[Example]]]:
    """Best-fit-decreasing packing of examples into rows of at most ``row_length`` tokens.

    Returns batches of rows; a row is the examples it holds, in order. The collator gives each example its
    own position ids starting at 0, which is what keeps examples from attending to each other in a row.
    Rows with room are kept sorted by free space, so packing n examples costs O(n log n) searches.
    """
    rows: list[list[Example]] = []
    room: list[tuple[int, int]] = []  # (free tokens, row index), ascending
    for ex in sorted(examples, key=lambda e: len(e.input_ids), reverse=True):
        n = len(ex.input_ids)
        i = bisect.bisect_left(room, (n, -1))
        if i < len(room):
            free, row = room.pop(i)
            rows[row].append(ex)
            bisect.insort(room, (free - n, row))
        else:
            rows.append([ex])
            bisect.insort(room, (row_length - n, len(rows) - 1))
    if rng is not None:
        rng.shuffle(rows)
    return [rows[i : i + rows_per_batch] for i in range(0, len(rows), rows_per_batch)]


def split_eval(
    pairs: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded held-out split (at least one eval pair when fraction > 0 and there are 2+ pairs)."""
    if fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    n_eval = max(1, round(len(pairs) * fraction))
    return shuffled[n_eval:], shuffled[:n_eval]
