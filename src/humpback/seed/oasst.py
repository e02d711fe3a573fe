"""OpenAssistant (oasst1) seed selection, as in the paper: first-turn pairs with the top-ranked reply.

A pair is a root prompter message (no parent) and one of its assistant replies. It is selected when
neither message is deleted, both are in the configured language, and the reply has rank 0 (a reply
with no rank is never selected). Later turns of a conversation are never used.

oasst1 ships in two layouts, both read here: the flat message table (JSONL, JSONL.gz or Parquet,
one message per row, linked by parent_id) and the trees file (one conversation per line, the root
`prompt` message holding `replies` recursively). Trees are flattened to the same messages, so both
layouts give the same selection. The export leaves null fields out of JSONL, so a missing key is null.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Literal

from humpback.errors import InputError
from humpback.readers import find_files, is_parquet, iter_records
from humpback.seed.config import SeedSource
from humpback.seed.pairs import Row, text_field

ROLES = ("prompter", "assistant")
# Parquet tables carry every column; a table without these is not the oasst message table.
PARQUET_COLUMNS = ["message_id", "parent_id", "role", "text", "lang", "rank"]
JSONL_KEYS = ["message_id", "role", "text"]


def detect_layout(path: Path, layout: Literal["auto", "flat", "trees"] = "auto",
                  max_bytes: int | None = None) -> Literal["flat", "trees"]:
    """Trees when named `*.trees.jsonl*` or when the first record has a `prompt` and no `role`."""
    if layout != "auto":
        return layout
    name = path.name.lower()
    if is_parquet(path) or ".messages." in name:
        return "flat"
    if ".trees." in name:
        return "trees"
    first = next(iter_records(path, max_line_bytes=max_bytes)).strict()  # a file without records has raised
    return "trees" if "prompt" in first and "role" not in first else "flat"


def _message(rec: dict, path: Path, label: str, parent_id: object = ...) -> dict:
    """Check and normalise one message record."""
    message_id = rec.get("message_id")
    if message_id is None or isinstance(message_id, (dict, list)):
        raise InputError(path, f"message without a usable message_id: {message_id!r}", label)
    role = rec.get("role")
    if role not in ROLES:
        raise InputError(path, f"role must be 'prompter' or 'assistant', got {role!r}", label)
    rank = rec.get("rank")
    if isinstance(rank, float):
        rank = None if math.isnan(rank) else int(rank) if rank.is_integer() else rank
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)):
        raise InputError(path, f"rank must be an integer or null, got {rank!r}", label)
    deleted = rec.get("deleted")
    if deleted not in (None, True, False, 0, 1):
        raise InputError(path, f"deleted must be true, false or null, got {deleted!r}", label)
    parent = rec.get("parent_id") if parent_id is ... else parent_id
    lang = rec.get("lang")
    return {
        "message_id": str(message_id),
        "parent_id": None if parent is None else str(parent),
        "role": role,
        "text": text_field(rec.get("text"), path, label, "text").strip(),
        "lang": lang if isinstance(lang, str) else None,
        "rank": rank,
        "deleted": bool(deleted),
    }


def read_flat(path: Path, max_bytes: int | None = None) -> list[dict]:
    required = PARQUET_COLUMNS if is_parquet(path) else JSONL_KEYS
    optional = ("parent_id", "lang", "rank", "deleted")
    return [_message(r.strict(), path, r.label) for r in iter_records(path, required, optional, max_line_bytes=max_bytes)]


def read_trees(path: Path, max_bytes: int | None = None) -> list[dict]:
    """Flatten every tree; the nesting, not the parent_id field, says who answers whom."""
    messages = []
    for record in iter_records(path, ["prompt"], max_line_bytes=max_bytes):
        label, root = record.label, record.strict()["prompt"]
        if not isinstance(root, dict):
            raise InputError(path, f"'prompt' must be a message object, got {type(root).__name__}", label)
        stack: list[tuple[dict, str | None]] = [(root, None)]
        while stack:
            node, parent = stack.pop()
            msg = _message(node, path, f"{label}, message {node.get('message_id')}", parent_id=parent)
            messages.append(msg)
            replies = node.get("replies") or []
            if not isinstance(replies, list) or not all(isinstance(r, dict) for r in replies):
                raise InputError(path, "'replies' must be a list of message objects", f"{label}, message {msg['message_id']}")
            stack.extend((r, msg["message_id"]) for r in reversed(replies))
    return messages


def _reject_reason(prompt: dict, reply: dict, lang: str) -> str | None:
    """Why a (root prompt, reply) pair is not a seed pair; None when it is one. First failing rule wins."""
    if prompt["deleted"]:
        return "prompt_deleted"
    if lang and prompt["lang"] != lang:
        return "prompt_lang"
    if reply["deleted"]:
        return "reply_deleted"
    if lang and reply["lang"] != lang:
        return "reply_lang"
    if reply["rank"] is None:
        return "reply_unranked"
    if reply["rank"] != 0:
        return "reply_not_rank_0"
    return None


def select_first_turn(messages: list[dict], lang: str, label: str) -> tuple[list[Row], dict]:
    """One row per (root prompt, reply) pair, `reason` None for the selected ones; plus counts."""
    by_id: dict[str, dict] = {}
    for m in messages:  # a directory may hold both the flat and the trees file of one export
        by_id.setdefault(m["message_id"], m)
    roots = [m for m in by_id.values() if m["parent_id"] is None and m["role"] == "prompter"]
    root_ids = {m["message_id"] for m in roots}
    replies = defaultdict(list)
    for m in by_id.values():
        if m["role"] == "assistant" and m["parent_id"] in root_ids:
            replies[m["parent_id"]].append(m)
    rows: list[Row] = []
    for prompt in roots:
        if not replies[prompt["message_id"]]:
            rows.append(_row(label, prompt["message_id"], prompt["text"], "", "no_reply"))
            continue
        chosen = False
        for reply in replies[prompt["message_id"]]:
            reason = _reject_reason(prompt, reply, lang)
            if reason is None and chosen:
                reason = "extra_rank_0"  # two rank-0 replies would be a broken export; keep the first
            chosen = chosen or reason is None
            rows.append(_row(label, f"{prompt['message_id']}/{reply['message_id']}", prompt["text"], reply["text"], reason))
    n_first = len(roots) + sum(len(v) for v in replies.values())
    stats = {
        "read": len(messages),
        "duplicate_message_id": len(messages) - len(by_id),
        "root_prompts": len(roots),
        "later_turn_messages": len(by_id) - n_first,
    }
    return rows, stats


def _row(source: str, source_id: str, instruction: str, output: str, reason: str | None) -> Row:
    return {"source": source, "source_id": source_id, "instruction": instruction, "output": output, "reason": reason}


def read_oasst(source: SeedSource, lang: str, max_bytes: int | None = None) -> tuple[list[Row], dict]:
    files = find_files(source.path)
    messages: list[dict] = []
    layouts = {}
    for path in files:
        layout = detect_layout(path, source.layout, max_bytes)
        layouts[str(path)] = layout
        messages.extend(read_trees(path, max_bytes) if layout == "trees" else read_flat(path, max_bytes))
    rows, stats = select_first_turn(messages, lang, source.label)
    return rows, {"files": list(layouts), "layouts": layouts, **stats}
