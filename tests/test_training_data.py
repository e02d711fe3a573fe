"""Training examples: reversed pairs, tags, loss masking, truncation; batch and lr arithmetic; configs."""

from pathlib import Path

import polars as pl
import pytest

from humpback.config import load_section
from humpback.errors import EmptyResultError, InputError
from humpback.models import load_embedded_tokenizer
from humpback.prompts import PromptsConfig
from humpback.rendering import CUT_MARK, encode
from humpback.training.data import IGNORE, TokenizeStats, build_examples, read_pairs, tokenize_example
from humpback.training.schedule import effective_batch, lr_factor, plan_batches

ROOT = Path(__file__).resolve().parents[1]
END = "<|im_end|>"


@pytest.fixture(scope="module")
def tok():
    return load_embedded_tokenizer()  # the tokenizer and chat template every base model of the default run has


SEED = pl.DataFrame({"instruction": ["Name a red fruit.", "What is 2+2?"], "output": ["An apple.", "It is 4."],
                     "source_id": ["a", "b"]})
CURATED = pl.DataFrame({"instruction": ["Explain tides."], "output": ["The moon pulls the sea."],
                        "segment_id": ["s1"], "score": [5]})


def reply_text(tok, t) -> str:
    return tok.decode([i for i, lab in zip(t.input_ids, t.labels, strict=True) if lab != IGNORE])


def test_backward_examples_are_the_seed_pairs_reversed_without_tag(tok):
    cfg = PromptsConfig()
    exs = build_examples("backward", cfg, SEED)
    assert len(exs) == 2
    msgs = exs[0].messages
    assert [m["role"] for m in msgs] == ["user", "assistant"]  # no tag system prompt
    assert "An apple." in msgs[0]["content"] and "Name a red fruit." not in msgs[0]["content"]
    assert msgs[1]["content"] == "Name a red fruit."
    t = tokenize_example(tok, msgs, 256)
    assert reply_text(tok, t) == "Name a red fruit." + END


def test_tags_follow_the_source_of_each_pair():
    cfg = PromptsConfig(seed_tag="SEED TAG", augmented_tag="WEB TAG")
    m0 = build_examples("m0", cfg, SEED)
    assert [e.messages[0] for e in m0] == [{"role": "system", "content": "SEED TAG"}] * 2
    fwd = build_examples("forward", cfg, SEED, CURATED)
    assert [(e.origin, e.messages[0]["content"]) for e in fwd] == [
        ("seed", "SEED TAG"), ("seed", "SEED TAG"), ("curated", "WEB TAG")]
    assert fwd[2].messages[1:] == [{"role": "user", "content": "Explain tides."},
                                   {"role": "assistant", "content": "The moon pulls the sea."}]


def test_loss_is_on_the_reply_and_its_end_token_only(tok):
    msgs = build_examples("forward", PromptsConfig(), SEED, CURATED)[2].messages
    t = tokenize_example(tok, msgs, 256)
    assert reply_text(tok, t) == "The moon pulls the sea." + END
    n_prompt = t.labels.index(next(lab for lab in t.labels if lab != IGNORE))
    prompt = tok.decode(t.input_ids[:n_prompt])
    assert prompt == tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    assert "Answer with knowledge from web search." in prompt
    assert t.labels[n_prompt:] == t.input_ids[n_prompt:]  # nothing after the end token, nothing masked inside


def test_truncation_keeps_the_short_side_whole(tok):
    stats = TokenizeStats()
    long_text = " ".join(f"word{i}" for i in range(400))
    # backward: the document is in the prompt; it is shortened, the instruction learnt whole
    back = build_examples("backward", PromptsConfig(), pl.DataFrame({"instruction": ["Q?"], "output": [long_text]}))
    t = tokenize_example(tok, back[0].messages, 160, stats)
    assert len(t.input_ids) <= 160 and reply_text(tok, t) == "Q?" + END
    text = tok.decode(t.input_ids)
    # the document loses its middle: its beginning and its end (and the task after it) are kept
    assert "word0 word1" in text and "word399" in text and CUT_MARK in text and "word200 " not in text
    # the rule inference applies: the same prompt tokens as the engines send for the same room
    n_prompt = t.labels.index(next(lab for lab in t.labels if lab != IGNORE))
    assert encode(tok, back[0].messages[:-1], max_tokens=160 - (len(t.input_ids) - n_prompt)) == t.input_ids[:n_prompt]
    # forward: a long answer is cut at the end (no end token), the prompt kept whole
    fwd = build_examples("m0", PromptsConfig(), pl.DataFrame({"instruction": ["Q?"], "output": [long_text]}))
    t = tokenize_example(tok, fwd[0].messages, 96, stats)
    assert len(t.input_ids) == 96 and reply_text(tok, t).startswith("word0 word1") and END not in reply_text(tok, t)
    assert stats.truncated == {"prompt": 1, "reply": 1}
    # a prompt that leaves no room for any reply token is dropped, with its reason
    assert tokenize_example(tok, fwd[0].messages, 5, stats) is None
    assert sum(stats.dropped.values()) == 1


def test_effective_batch_is_8_under_3000_examples_else_32():
    assert effective_batch(2999, 32, 8, 3000) == 8
    assert effective_batch(3000, 32, 8, 3000) == 32
    assert (p := plan_batches(32, 8, 1)).per_device == 8 and p.accumulation == 4 and p.effective == 32
    assert (p := plan_batches(32, 8, 2)).per_device == 8 and p.accumulation == 2 and p.effective == 32
    assert (p := plan_batches(8, 3, 1)).per_device == 2 and p.accumulation == 4 and p.effective == 8
    assert (p := plan_batches(8, 16, 1)).per_device == 8 and p.accumulation == 1


def test_lr_decays_linearly_to_a_ratio_of_the_peak():
    total = 11
    factors = [lr_factor(s, total, 0, 0.9) for s in range(total)]
    assert factors[0] == 1.0 and factors[-1] == pytest.approx(0.9)  # 1e-5 -> 9e-6, not 1e-5 * 9e-6
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))
    assert factors[5] == pytest.approx(0.95)
    warm = [lr_factor(s, 10, 3, 0.5) for s in range(10)]
    assert warm[:4] == [0.25, 0.5, 0.75, 1.0] and warm[-1] == pytest.approx(0.5)
    assert lr_factor(100, 10, 0, 0.9) == pytest.approx(0.9)  # stays at the floor


def test_empty_or_malformed_pair_tables_are_clear_errors(tmp_path):
    empty = tmp_path / "seed.parquet"
    pl.DataFrame({"instruction": [], "output": []}, schema={"instruction": pl.Utf8, "output": pl.Utf8}).write_parquet(empty)
    with pytest.raises(EmptyResultError, match="seed.parquet: no seed pairs to train on"):
        read_pairs(empty, "seed pairs")
    with pytest.raises(InputError, match=r"missing.parquet: file not found \(has its stage run\?\)$"):
        read_pairs(tmp_path / "missing.parquet", "seed pairs")
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"instruction": ["x", ""], "output": ["y", "z"]}).write_parquet(bad)
    with pytest.raises(InputError, match="bad.parquet, record 1: instruction and output must be non-empty"):
        build_examples("m0", PromptsConfig(), read_pairs(bad, "seed pairs"), seed_path=str(bad))


def test_paper_preset_and_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    paper = load_section("train", ROOT / "configs/paper.yaml")
    assert (paper.mode, paper.learning_rate, paper.final_lr_ratio) == ("full", 1e-5, 0.9)
    assert (paper.weight_decay, paper.dropout, paper.batch_size, paper.small_data_batch_size) == (0.1, 0.1, 32, 8)
    default = load_section("train", ROOT / "params.yaml")
    assert default.mode == "lora"
    kinds = {name: load_config_from_file(str(ROOT / f"configs/accelerate/{name}.yaml")).distributed_type
             for name in ("ddp", "fsdp", "deepspeed_zero3")}
    assert {k: getattr(v, "value", v) for k, v in kinds.items()} == {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}


def test_the_batch_loss_is_the_mean_nll_of_the_reply_tokens(tiny_model_dir, tok):
    """Collated examples of different lengths: the model's loss on the padded batch equals the mean
    negative log-likelihood of the reply tokens alone, each example scored unpadded. Padding in the
    labels (the pad id is the end token here), a prompt token in the loss, or a shifted label
    would each change the number."""
    import torch
    from transformers import AutoModelForCausalLM

    from humpback.training.data import Collator

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32).eval()
    exs = build_examples("m0", PromptsConfig(), SEED.with_columns(
        pl.Series("output", ["An apple, or a cherry, or a strawberry in June.", "It is 4."])))
    items = [tokenize_example(tok, ex.messages, 256) for ex in exs]
    assert len({len(t.input_ids) for t in items}) == 2  # one of them is padded
    batch = Collator(tok.pad_token_id)(items)
    with torch.no_grad():
        loss = model(**batch).loss
        total, count = 0.0, 0
        for t in items:
            logits = model(input_ids=torch.tensor([t.input_ids])).logits[0, :-1]
            targets = torch.tensor(t.input_ids[1:])
            reply = torch.tensor([lab != IGNORE for lab in t.labels[1:]])
            nll = torch.nn.functional.cross_entropy(logits[reply], targets[reply], reduction="sum")
            total, count = total + float(nll), count + int(reply.sum())
    assert count == sum(sum(lab != IGNORE for lab in t.labels) for t in items)
    assert float(loss) == pytest.approx(total / count, rel=1e-4)


def test_tokenize_all_counts_what_it_keeps_and_drops(tok):
    from humpback.training.data import tokenize_all

    exs = build_examples("m0", PromptsConfig(), SEED)
    items, stats = tokenize_all(tok, exs, 256)
    assert len(items) == stats.examples == 2
    assert stats.tokens == sum(len(t.input_ids) for t in items)
    assert stats.loss_tokens == sum(sum(lab != IGNORE for lab in t.labels) for t in items)
    assert 0 < stats.loss_tokens < stats.tokens and not stats.truncated and not stats.dropped
    n_prompt = min(t.labels.index(next(lab for lab in t.labels if lab != IGNORE)) for t in items)
    long = build_examples("m0", PromptsConfig(), SEED.with_columns(pl.Series("instruction", ["word " * 300, "x"])))
    cut, cut_stats = tokenize_all(tok, [*exs, long[0]], n_prompt + 40)
    assert (len(cut), cut_stats.examples, dict(cut_stats.truncated)) == (3, 3, {"prompt": 1})
    assert cut_stats.tokens == sum(len(t.input_ids) for t in cut) and len(cut[2].input_ids) <= n_prompt + 40
    with pytest.raises(EmptyResultError, match="no training example fits in train.max_seq_len=5 tokens"):
        tokenize_all(tok, exs, 5)


def test_the_collator_pads_inputs_labels_and_mask_alike_from_either_form():
    from humpback.training.data import Collator, Tokenized, TokenizedDataset

    items = [Tokenized([5, 6, 7], [IGNORE, 6, 7]), Tokenized([8], [8])]
    ds = TokenizedDataset(items)
    assert len(ds) == 2 and ds[1] == {"input_ids": [8], "labels": [8]}
    for batch in (Collator(0)(items), Collator(0)([ds[0], ds[1]])):
        assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
        assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
        assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
        assert {str(t.dtype) for t in batch.values()} == {"torch.int64"}


def test_read_pairs_names_a_missing_column_and_build_examples_its_kind(tmp_path):
    p = tmp_path / "pairs.parquet"
    pl.DataFrame({"instruction": ["x"]}).write_parquet(p)
    with pytest.raises(InputError, match="pairs.parquet.*output"):
        read_pairs(p, "pairs")
    pl.DataFrame({"instruction": ["x"], "output": ["y"], "extra": [1]}).write_parquet(p)
    assert read_pairs(p, "pairs").columns[:2] == ["instruction", "output"]
    with pytest.raises(ValueError, match="^unknown training kind 'sideways'$"):
        build_examples("sideways", PromptsConfig(), SEED)
    with pytest.raises(ValueError, match="^forward training needs the curated pairs$"):
        build_examples("forward", PromptsConfig(), SEED)
    with pytest.raises(ValueError, match="^training kind 'm0' learns from the seed pairs; with_seed=False is for forward only$"):
        build_examples("m0", PromptsConfig(), SEED, with_seed=False)
    alone = build_examples("forward", PromptsConfig(), SEED, CURATED, with_seed=False)
    assert [e.origin for e in alone] == ["curated"]
    bad = pl.DataFrame({"instruction": ["x"], "output": ["  "]})
    with pytest.raises(InputError, match="cur.parquet, record 0: instruction and output must be non-empty"):
        build_examples("forward", PromptsConfig(), SEED, bad, curated_path="cur.parquet")


def _lengths(tok, messages):
    from humpback.training.data import _split

    prompt, reply = _split(tok, messages)
    return len(prompt), len(reply)


def test_truncation_at_its_bounds(tok):
    from humpback.training.data import tokenize_all

    def m0(instruction: str, output: str):
        return build_examples("m0", PromptsConfig(), pl.DataFrame({"instruction": [instruction], "output": [output]}))[0]

    ex = m0("Q?", "An answer of a few words.")
    n_prompt, n_reply = _lengths(tok, ex.messages)
    stats = TokenizeStats()
    exact = tokenize_example(tok, ex.messages, n_prompt + n_reply, stats)  # fits exactly: nothing cut
    assert len(exact.input_ids) == n_prompt + n_reply and not stats.truncated
    answer = m0("Q?", " ".join(["word"] * 300))  # the reply is the longer side: it is what gets cut
    one = tokenize_example(tok, answer.messages, n_prompt + 1, stats)  # room for one reply token
    assert len(one.input_ids) == n_prompt + 1 and one.labels[-1] != IGNORE and stats.truncated == {"reply": 1}
    assert tokenize_example(tok, answer.messages, n_prompt, stats) is None  # no room at all
    assert stats.dropped == {"prompt_too_long_for_max_seq_len": 1}
    # a prompt exactly as long as the reply: the reply is the side that is cut
    for k in range(1, 120):
        even = m0("Q?", " ".join(["word"] * k))
        p, r = _lengths(tok, even.messages)
        if p == r:
            break
    assert p == r
    evens = TokenizeStats()
    t = tokenize_example(tok, even.messages, p + r - 1, evens)
    assert evens.truncated == {"reply": 1} and t.input_ids[:p] == tokenize_example(tok, even.messages, p + r).input_ids[:p]
    # a long prompt whose reply alone does not fit: dropped, with its reason
    long = build_examples("backward", PromptsConfig(), pl.DataFrame(
        {"instruction": [" ".join(["ask"] * 100)], "output": [" ".join(["text"] * 400)]}))[0]
    dropped = TokenizeStats()
    assert tokenize_example(tok, long.messages, 90, dropped) is None
    assert dropped.dropped == {"reply_too_long_for_max_seq_len": 1} and dropped.examples == 0
    # counts add up over examples
    both = [m0("Q?", " ".join(["word"] * 300))] * 2
    items, total = tokenize_all(tok, both + [long, long], 64)
    assert (total.truncated, total.examples, dict(total.dropped)) == (
        {"reply": 2}, 2, {"reply_too_long_for_max_seq_len": 2})
    none_left = TokenizeStats()
    for _ in range(2):
        assert tokenize_example(tok, answer.messages, n_prompt, none_left) is None
    assert none_left.dropped == {"prompt_too_long_for_max_seq_len": 2}
    assert total.tokens == 128 and total.loss_tokens == 128 - 2 * n_prompt
    # a prompt longer than its reply, though by less than the limit: still the prompt is cut
    mid = build_examples("backward", PromptsConfig(), pl.DataFrame(
        {"instruction": [" ".join(["ask"] * 40)], "output": [" ".join(["text"] * 70)]}))[0]
    p, r = _lengths(tok, mid.messages)
    assert p > r and p - r < p + r - 5
    mid_stats = TokenizeStats()
    assert tokenize_example(tok, mid.messages, p + r - 5, mid_stats) is not None and mid_stats.truncated == {"prompt": 1}
    backs = build_examples("backward", PromptsConfig(), pl.DataFrame({"instruction": ["Q?"] * 2, "output": [" ".join(["text"] * 400)] * 2}))
    _, cut = tokenize_all(tok, backs, 128)
    assert cut.truncated == {"prompt": 2}


def test_a_template_without_an_end_token_gets_the_eos_appended():
    tok = load_embedded_tokenizer()  # a copy of its own: the template is replaced
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    from humpback.training.data import _split

    msgs = build_examples("m0", PromptsConfig(), SEED)[0].messages
    prompt, reply = _split(tok, msgs)
    assert reply[-1] == tok.eos_token_id and tok.decode(reply[:-1]).strip() == "An apple."
    assert tok.decode(prompt).endswith("assistant:")


def test_seed_rows_are_named_by_their_source_and_origin():
    bad = pl.DataFrame({"instruction": [None], "output": ["y"]}, schema={"instruction": pl.Utf8, "output": pl.Utf8})
    with pytest.raises(InputError, match=r"^seed, record 0: instruction and output must be non-empty strings"):
        build_examples("m0", PromptsConfig(), bad)
    with pytest.raises(InputError, match=r"^curated, record 0: "):
        build_examples("forward", PromptsConfig(), SEED, bad)
    assert {e.origin for e in build_examples("backward", PromptsConfig(), SEED)} == {"seed"}
