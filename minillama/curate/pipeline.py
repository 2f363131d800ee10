"""The curation pipeline, streamed: read -> exact dedup -> near dedup -> line dedup -> heuristic filters -> classifier.

The order is Llama 3's (Grattafiori et al. 2024, sec. 3.1.1): cheap dedup first, so later stages see each text once;
line dedup before the filters, so a page reduced to nothing by boilerplate removal is then dropped for its length;
the model-based classifier last, on what the rules let through. Documents flow one at a time through generators,
so memory holds a 16-byte fingerprint and ``bands`` band keys per kept document, plus one bucket of documents for
line dedup, never the corpus. :class:`StageCounts` records, per stage, documents in and out and why each was
dropped, and, when the input carries ground-truth ``kind`` labels (the dirty corpus), which kinds each stage drops.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from minillama.atomic import atomic_write
from minillama.curate.classifier import QualityClassifier
from minillama.curate.documents import Document, write_jsonl
from minillama.curate.exact import ExactDedup
from minillama.curate.filters import FilterConfig, failed_filter
from minillama.curate.lines import count_lines, remove_repeated_lines
from minillama.curate.lsh import LSHIndex
from minillama.curate.minhash import MinHasher
from minillama.errors import UserError


@dataclass(frozen=True)
class CurateConfig:
    """Every knob of the pipeline; defaults are the ones chapter 10 measures."""

    num_perm: int = 128  # MinHash functions per signature
    shingle_size: int = 5  # words per shingle
    bands: int = 25  # LSH bands; with rows=5 the S-curve steps up near Jaccard (1/25)**(1/5) = 0.53
    rows: int = 5  # signature values per band
    seed: int = 0  # of the MinHash functions
    line_bucket: int = 10_000  # documents per line-dedup bucket (Llama 3: 30M)
    max_line_repeats: int = 6  # a line in more documents of a bucket than this is dropped (Llama 3: 6)
    min_line_chars: int = 20  # shorter normalized lines are never dropped
    classifier: str | None = None  # a QualityClassifier .npz; None skips the stage
    min_quality: float = 0.5  # p(good) below this is dropped
    filters: FilterConfig = field(default_factory=FilterConfig)

    def __post_init__(self) -> None:
        if self.bands * self.rows > self.num_perm:
            raise UserError(f"bands x rows = {self.bands} x {self.rows} needs num_perm >= {self.bands * self.rows}, "
                            f"got {self.num_perm}")


@dataclass
class StageCounts:
    """What one stage did: documents in and out, drops by reason and by ground-truth kind, lines removed."""

    documents_in: int = 0
    documents_out: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> documents
    dropped_kinds: Counter = field(default_factory=Counter)  # ground-truth kind -> documents
    lines_removed: int = 0

    def drop(self, document: Document, reason: str) -> None:
        self.dropped[reason] += 1
        if document.kind:
            self.dropped_kinds[document.kind] += 1


STAGES = ("exact_dedup", "near_dedup", "line_dedup", "filters", "classifier")


def _exact(documents: Iterable[Document], counts: StageCounts) -> Iterator[Document]:
    dedup = ExactDedup()
    for document in documents:
        counts.documents_in += 1
        if dedup.is_duplicate(document.text):
            counts.drop(document, "exact_duplicate")
            continue
        counts.documents_out += 1
        yield document


def _near(documents: Iterable[Document], counts: StageCounts, config: CurateConfig) -> Iterator[Document]:
    hasher = MinHasher(config.num_perm, config.seed, config.shingle_size)
    index = LSHIndex(config.bands, config.rows)
    for number, document in enumerate(documents):
        counts.documents_in += 1
        signature = hasher.signature(document.text)
        if index.query(signature):
            counts.drop(document, "near_duplicate")
            continue
        index.insert(number, signature)
        counts.documents_out += 1
        yield document


def _lines(documents: Iterable[Document], counts: StageCounts, config: CurateConfig) -> Iterator[Document]:
    def flush(bucket: list[Document]) -> Iterator[Document]:
        prose = [d.text for d in bucket if d.domain == "prose"]  # code repeats lines by nature: not deduped here
        line_counts = count_lines(prose, config.min_line_chars)
        for document in bucket:
            if document.domain == "prose":
                text, removed = remove_repeated_lines(document.text, line_counts, config.max_line_repeats,
                                                      config.min_line_chars)
                counts.lines_removed += removed
                document = replace(document, text=text)
            counts.documents_out += 1
            yield document

    bucket: list[Document] = []
    for document in documents:
        counts.documents_in += 1
        bucket.append(document)
        if len(bucket) == config.line_bucket:
            yield from flush(bucket)
            bucket = []
    yield from flush(bucket)


def _filters(documents: Iterable[Document], counts: StageCounts, config: CurateConfig) -> Iterator[Document]:
    for document in documents:
        counts.documents_in += 1
        reason = failed_filter(document.text, document.domain, config.filters)
        if reason:
            counts.drop(document, reason)
            continue
        counts.documents_out += 1
        yield document


def _classify(documents: Iterable[Document], counts: StageCounts, config: CurateConfig) -> Iterator[Document]:
    classifier = QualityClassifier.load(config.classifier) if config.classifier else None
    for document in documents:
        counts.documents_in += 1
        if classifier and document.domain == "prose" and classifier.p_good([document.text])[0] < config.min_quality:
            counts.drop(document, "low_quality")
            continue
        counts.documents_out += 1
        yield document


def curate(documents: Iterable[Document], config: CurateConfig = CurateConfig()) -> tuple[Iterator[Document],
                                                                                         dict[str, StageCounts]]:
    """The kept documents (a lazy stream) and the counts per stage, filled in as the stream is consumed."""
    if config.classifier and not Path(config.classifier).is_file():
        raise UserError(f"no such classifier file: {config.classifier}")
    counts = {stage: StageCounts() for stage in STAGES}
    stream = _exact(documents, counts["exact_dedup"])
    stream = _near(stream, counts["near_dedup"], config)
    stream = _lines(stream, counts["line_dedup"], config)
    stream = _filters(stream, counts["filters"], config)
    stream = _classify(stream, counts["classifier"], config)
    return stream, counts


def report_dict(counts: dict[str, StageCounts]) -> dict:
    """The counts as plain JSON-ready data."""
    return {stage: {"documents_in": c.documents_in, "documents_out": c.documents_out, "dropped": dict(c.dropped),
                    "dropped_kinds": dict(c.dropped_kinds), "lines_removed": c.lines_removed}
            for stage, c in counts.items()}


def format_report(counts: dict[str, StageCounts], width: int = 84) -> str:
    """A table of the stages: documents in, out, and the reasons for the drops (wrapped to ``width`` columns)."""
    lines = [f"{'stage':<12} {'in':>7} {'out':>7}  dropped (reason: documents)"]
    indent = " " * 30
    for stage, c in counts.items():
        reasons = ", ".join(f"{r}: {n}" for r, n in c.dropped.most_common())
        if c.lines_removed:
            reasons = f"{c.lines_removed} lines removed" + (f", {reasons}" if reasons else "")
        row = f"{stage:<12} {c.documents_in:>7} {c.documents_out:>7}  {reasons or '-'}"
        lines.append(textwrap.fill(row, width, subsequent_indent=indent, break_on_hyphens=False))
    return "\n".join(lines)


def curate_to_folder(documents: Iterable[Document], output: str | Path, config: CurateConfig = CurateConfig(),
                     ) -> dict[str, StageCounts]:
    """Run the pipeline and write ``output/kept.jsonl`` and ``output/report.json``, each atomically."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    stream, counts = curate(documents, config)
    write_jsonl(stream, output / "kept.jsonl")
    report = {"config": asdict(config), "stages": report_dict(counts)}
    atomic_write(output / "report.json", json.dumps(report, indent=2) + "\n")
    return counts
