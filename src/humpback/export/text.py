"""Markdown pieces the cards share: front matter, tables, code blocks, the license note, the citation."""

from __future__ import annotations

from typing import Any

CITATION = """@article{li2023self,
  title={Self-Alignment with Instruction Backtranslation},
  author={Li, Xian and Yu, Ping and Zhou, Chunting and Schick, Timo and Levy, Omer and Zettlemoyer, Luke and Weston, Jason and Lewis, Mike},
  journal={arXiv preprint arXiv:2308.06259},
  year={2023}
}"""


def front_matter(yaml_text: str) -> str:
    return f"---\n{yaml_text.rstrip()}\n---\n\n"


def cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.2f}"
    return " ".join(str(value).split()).replace("|", "\\|")


def table(header: list[Any], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(out)


def code_block(text: str, language: str = "") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def license_note(license: str, key: str, terms: str) -> str:
    if license == "other":
        return (f"**Not set.** `{key}` in params.yaml is `other`, the placeholder: choose the license this "
                f"export may carry (a hub id such as `apache-2.0` or `cc-by-4.0`), set `{key}` and re-run "
                f"`dvc repro export` before publishing. {terms}")
    return f"`{license}` (set by `{key}` in params.yaml). {terms}"
