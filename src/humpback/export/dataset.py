"""exports/dataset: a Hugging Face dataset folder (README.md card + Parquet under data/) with two
configs, `curated` (the last iteration's selected pairs) and `mixture` (what its model was trained
on, tags included). `datasets.load_dataset(folder, config)` reads it; `hf upload` publishes it."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from huggingface_hub import DatasetCardData

from humpback.export.facts import DatasetFacts, ExportFacts
from humpback.export.text import CITATION, code_block, front_matter, license_note, table

CONFIGS = ("curated", "mixture")
TAGS = ["instruction-backtranslation", "self-curation", "synthetic", "humpback"]


def data_file(config: str) -> str:
    return f"data/{config}/train.parquet"


def size_category(n: int) -> str:
    """The hub's size_categories bucket for n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if n < bound), "1B<n<10B")


def _tables(d: DatasetFacts) -> dict[str, pl.DataFrame]:
    return {"curated": d.curated, "mixture": d.mixture}


def card(f: ExportFacts, arrow_bytes: dict[str, int]) -> str:
    """The dataset card; `arrow_bytes`: each config's size once loaded (the split's num_bytes)."""
    d = f.dataset
    tables = _tables(d)
    data = DatasetCardData(
        license=f.license, language=f.languages or None, size_categories=[size_category(max(map(len, tables.values())))],
        task_categories=["text-generation"], tags=TAGS, pretty_name=f"humpback curated instructions ({d.iteration})",
        configs=[{"config_name": c, "data_files": [{"split": "train", "path": data_file(c)}], **({"default": True} if c == "curated" else {})}
                 for c in CONFIGS],
        # rows per split (datasets checks them when it loads the folder) and their size in Arrow
        dataset_info=[{"config_name": c, "splits": [{"name": "train", "num_bytes": arrow_bytes[c],
                                                     "num_examples": len(t)}]} for c, t in tables.items()],
    )
    return front_matter(data.to_yaml()) + body(f)


def _score_summary(scores: pl.Series) -> str:
    s = scores.drop_nulls()
    if s.is_empty():
        return "no kept pair has a score (select.curate false keeps candidates unscored)"
    return (f"min {s.min():.2f}, median {s.median():.2f}, mean {s.mean():.2f}, max {s.max():.2f}"
            + (f"; {scores.null_count()} unscored" if scores.null_count() else ""))


def body(f: ExportFacts) -> str:
    d = f.dataset
    repo = f.dataset_repo or "<user>/<dataset-name>"
    c = d.curation
    origins = dict(d.mixture.group_by("origin").len().iter_rows())
    base = f"hub id `{f.base_hub_id}`" if f.base_hub_id else "no hub id"
    hist = c["histogram"] if isinstance(c["histogram"], dict) else {}
    lines = [
        f"# humpback curated instructions ({d.iteration})",
        "",
        "Instruction-following pairs made by instruction backtranslation (Li et al., 2023, arXiv:2308.06259) with the "
        "humpback pipeline: a backward model wrote an instruction for each web text segment, the previous model "
        "rated each (instruction, segment) pair, and the best-rated pairs were kept.",
        "",
        "## Configs",
        "",
        table(["config", "rows", "file", "what it is"], [
            ["curated", len(d.curated), f"`{data_file('curated')}`",
             f"the pairs select@{d.iteration} kept: instruction, output (the web segment), segment_id, score"],
            ["mixture", len(d.mixture), f"`{data_file('mixture')}`",
             f"what model {d.iteration} was trained on: origin (seed or curated), system (its tag), instruction, "
             "output, messages (the chat as trained)"],
        ]),
        "",
        "## How it was made",
        "",
        f"* Base model: `{f.base_source}` (`base_model.source`), {base}.",
        "* Backward model: `models/backward`, the base fine-tuned on the seed pairs reversed (output -> instruction); "
        "its card is `exports/models/backward/README.md`.",
        f"* Iteration: `{d.iteration}`; its candidates were scored by model `{d.scorer}` "
        f"(score mode `{c.get('mode', 'unknown')}`).",
        f"* Selection (`select` as {d.iteration} saw it): threshold {d.select_params['threshold']:g}, top_share "
        f"{d.select_params['top_share']:g}, max_examples {d.select_params['max_examples']}, curate "
        f"{str(d.select_params['curate']).lower()}, sample {d.select_params['sample']} (seed {d.select_params['seed']}).",
        f"* Mixture (`mix`): seed {str(d.mix_params['seed']).lower()}; seed pairs carry the system prompt "
        f"\"{d.seed_tag}\", curated pairs \"{d.augmented_tag}\".",
        "",
        "## Counts",
        "",
        table(["count", "value", "source"], [
            ["candidates scored", c["n"], f"`{d.curation_path}`"],
            ["kept (curated rows)", len(d.curated), f"`{d.curated_path}`"],
            ["seed pairs", d.seed_rows, f"`{d.seed_path}`"],
            ["mixture rows", len(d.mixture), f"{origins.get('seed', 0)} seed + {origins.get('curated', 0)} curated"],
        ]),
        "",
        "## Score distribution",
        "",
        f"Scores of all {c['n']} scored candidates (5-point scale, rounded):",
        "",
        table(["score", *hist], [["candidates", *hist.values()]]) if hist else "(no histogram recorded)",
        "",
        f"Scores of the kept pairs: {_score_summary(d.curated['score'])}.",
        "",
        "## Load",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'curated = load_dataset("exports/dataset", "curated", split="train")',
        'mixture = load_dataset("exports/dataset", "mixture", split="train")',
        "```",
        "",
        "## Upload",
        "",
        "This folder is ready for the hub as it is (`hf upload` is the command `huggingface-cli upload` became):",
        "",
        "```bash",
        f"hf upload {repo} exports/dataset . --repo-type dataset",
        "```",
        "",
        f"or `HfApi().upload_folder(folder_path=\"exports/dataset\", repo_id=\"{repo}\", repo_type=\"dataset\")`.",
        "",
        "## License",
        "",
        license_note(f.license, "export.license",
                     "The outputs are web text from the corpus sources, the seed pairs come from the seed sources, "
                     "and the instructions were written by a model derived from the base model: their terms apply."),
        "",
        "## Citation",
        "",
        code_block(CITATION, "bibtex"),
    ]
    return "\n".join(lines) + "\n"


def write(f: ExportFacts, folder: Path) -> None:
    """Fill `folder` (empty): README.md and one Parquet file per config."""
    arrow_bytes = {}
    for config, df in _tables(f.dataset).items():
        path = folder / data_file(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(path)
        arrow_bytes[config] = pq.read_table(path).nbytes  # as datasets reads it back
    (folder / "README.md").write_text(card(f, arrow_bytes), encoding="utf-8")
