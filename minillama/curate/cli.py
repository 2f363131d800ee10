"""``minillama curate``: clean a corpus the way Llama 3's pipeline does, streaming, and report what each stage did.

    minillama curate --make-dirty-corpus dirty.jsonl           # the offline demo corpus of chapter 10 (seeded)
    minillama curate --train-classifier quality.npz dirty.jsonl  # a quality classifier, with held-out P/R
    minillama curate dirty.jsonl curated/ --classifier quality.npz
    minillama curate ~/fineweb-sample.jsonl curated/           # any JSON-lines file with a "text" field, or a folder
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import fields
from pathlib import Path

from minillama.atomic import atomic_write
from minillama.errors import UserError

DESCRIPTION = """\
Clean a corpus in five streamed stages, Llama 3's order (Grattafiori et al. 2024, sec. 3.1.1):

  1. exact dedup   drop a document whose normalized text (case, spacing, punctuation ignored) was seen before
  2. near dedup    MinHash signatures of word shingles (--num-perm, --shingle-size) in an LSH index of
                   --bands x --rows; a document sharing a band with a kept one is dropped: the probability is
                   1 - (1 - J**rows)**bands for Jaccard similarity J, a step near (1/bands)**(1/rows)
  3. line dedup    in buckets of --line-bucket documents, remove the lines (>= --min-line-chars) that appear in
                   more than --max-line-repeats documents: menus, cookie banners, footers (prose only)
  4. filters       Gopher/C4 rules for prose (word count, mean word length, symbols, stop words, bullets,
                   repeated lines, paragraphs and n-grams, lorem ipsum, curly braces), StarCoder rules for code;
                   the first filter a document fails is counted as the reason
  5. classifier    with --classifier, drop prose whose p(good) < --min-quality

INPUT is a JSON-lines file (one {"text": ...} per line; optional "id", "domain": "prose"|"code", "source",
"kind"), a text file, a folder of .txt/.md/.rst (prose) and .py (code) files, or the name of a document corpus
(tinystories, fineweb-edu: downloaded on first use). OUTPUT gets kept.jsonl and
report.json (counts per stage, reasons, and the ground-truth kinds dropped when the input has "kind"); the table
of counts is printed. Memory holds per kept document a 16-byte hash and the band keys, plus one line bucket.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from minillama.curate.pipeline import CurateConfig

    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.allow_abbrev = False
    parser.add_argument("input", nargs="?", help="a .jsonl file, a text file, a folder or a corpus name")
    parser.add_argument("output", nargs="?", help="folder for kept.jsonl and report.json")
    parser.add_argument("--make-dirty-corpus", metavar="FILE", help="write chapter 10's dirty corpus to FILE and exit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dirty corpus (default: 0)")
    parser.add_argument("--train-classifier", metavar="FILE",
                        help="train a quality classifier on INPUT's labelled documents (kind 'original' = good; "
                             "boilerplate, spam, lorem, gibberish, word_salad = noise), save it to FILE and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    defaults = CurateConfig()
    for f in fields(CurateConfig):
        if f.name in ("filters", "seed"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = {"int": int, "float": float}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, default=getattr(defaults, f.name),
                            help=f"(default: {getattr(defaults, f.name)})")


def run(args: argparse.Namespace) -> int:
    from minillama.curate.documents import write_jsonl

    if args.make_dirty_corpus:
        from minillama.curate.dirty import build_dirty_corpus

        count = write_jsonl(build_dirty_corpus(seed=args.seed), args.make_dirty_corpus)
        print(f"wrote {count} documents to {args.make_dirty_corpus}")
        return 0
    if not args.input:
        raise UserError("give an INPUT to curate (or --make-dirty-corpus FILE); see minillama curate --help")
    if args.train_classifier:
        return _train_classifier(args)
    if not args.output:
        raise UserError("give an OUTPUT folder for kept.jsonl and report.json")
    return _curate(args)


def _train_classifier(args: argparse.Namespace) -> int:
    from minillama.curate.classifier import train_and_evaluate
    from minillama.curate.dirty import GOOD_KINDS, NOISE_KINDS
    from minillama.curate.documents import read_documents

    labelled = [d for d in read_documents(args.input) if d.domain == "prose" and d.kind in GOOD_KINDS | NOISE_KINDS]
    if not labelled:
        raise UserError(f"{args.input} has no prose documents with a 'kind' label to train on")
    classifier, metrics = train_and_evaluate([d.id for d in labelled], [d.text for d in labelled],
                                             [int(d.kind in GOOD_KINDS) for d in labelled])
    path = Path(args.train_classifier)
    if path.suffix != ".npz":
        raise UserError(f"the classifier file must end in .npz, got {path}")
    atomic_write(path, lambda file: file.write_bytes(_npz_bytes(classifier)))
    print(json.dumps(metrics, indent=2))
    print(f"saved {path}")
    return 0


def _npz_bytes(classifier) -> bytes:
    buffer = io.BytesIO()  # np.savez would add ".npz" to a temporary file's name: write the bytes instead
    classifier.save(buffer)
    return buffer.getvalue()


def _curate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from minillama.curate.documents import read_documents
    from minillama.curate.pipeline import CurateConfig, curate_to_folder, format_report

    config = CurateConfig(**{f.name: getattr(args, f.name) for f in fields(CurateConfig)
                             if f.name not in ("filters", "seed")})
    documents = tqdm(read_documents(args.input), unit=" docs", disable=args.no_progress, file=sys.stderr)
    counts = curate_to_folder(documents, args.output, config)
    print(format_report(counts))
    print(f"kept documents: {Path(args.output) / 'kept.jsonl'}; report: {Path(args.output) / 'report.json'}")
    return 0
