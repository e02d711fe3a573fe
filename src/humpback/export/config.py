"""`export:` params: what the hub cards say that the pipeline cannot know (licenses, a hub base id)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from humpback.config import excerpt, name_problem
from humpback.models import HUB_ID

# the hub's license identifiers: lowercase words joined by - . + (apache-2.0, cc-by-nc-4.0, llama3.1, other)
_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


def _license_problem(value: str) -> str | None:
    if _LICENSE.fullmatch(value):
        return None
    return f"{excerpt(value)} is not a hub license id (lowercase, e.g. apache-2.0, cc-by-4.0, mit, other)"


@dataclass
class ExportConfig:
    # The licenses the cards declare. "other" = not decided: the seed pairs, the web text and the base
    # model each carry their own terms, which only the user can weigh; the cards say so until set.
    license: str = "other"        # the dataset (exports/dataset)
    model_license: str = "other"  # every model card (exports/models/<name>)
    # the languages the cards declare (ISO 639-1); the default is that of corpus.languages and seed.lang.
    # Its own key: reading the corpus and seed sections would make the export check their source files.
    language: list[str] = field(default_factory=lambda: ["en"])
    # the hub id the model cards name as base_model; "" = from base_model.source (embedded:
    # HuggingFaceTB/SmolLM2-135M-Instruct, a hub id: itself, a local path or tiny: none)
    base_model: str = ""
    # the hub id the dataset is to be published as (org/name): named in its upload command and in the
    # `datasets:` of the model trained on it; "" = not decided (a placeholder in the commands)
    dataset_repo: str = ""
    # the iteration whose curated pairs and training mixture are exported; "" = the last in `iterations`
    iteration: str = ""

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for key in ("license", "model_license"):
            if (problem := _license_problem(getattr(self, key))):
                out.append((key, problem))
        for code in self.language:
            if not re.fullmatch(r"[a-z]{2,3}", code):
                out.append(("language", f"{excerpt(code)} is not an ISO 639 language code (two or three lowercase letters)"))
        if self.base_model and not HUB_ID.fullmatch(self.base_model):
            out.append(("base_model", f"{excerpt(self.base_model)} is not a hub id (org/name: letters, digits, _ . -)"))
        if self.dataset_repo and not HUB_ID.fullmatch(self.dataset_repo):
            out.append(("dataset_repo", f"{excerpt(self.dataset_repo)} is not a hub id (org/name: letters, digits, _ . -)"))
        if self.iteration and (problem := name_problem(self.iteration, "iteration name", iteration=True)):
            out.append(("iteration", problem))
        return out
