"""The unlabelled corpus: documents from installed-package READMEs, HTML, WARC or text dumps, cut into
header segments, filtered and deduplicated (the `corpus` stage)."""

from humpback.corpus.config import CorpusConfig, SourceConfig
from humpback.corpus.pipeline import REJECTED_SCHEMA, SEGMENT_SCHEMA, prepare_corpus

__all__ = ["CorpusConfig", "SourceConfig", "prepare_corpus", "SEGMENT_SCHEMA", "REJECTED_SCHEMA"]
