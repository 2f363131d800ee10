"""A dirty corpus with known answers, built offline from a fixed seed: the test bench of every curation stage.

Clean documents come from what every machine has: tinyshakespeare (:func:`minillama.data.load_text`, cut into
scenes of a few speeches), the help topics of the standard library's ``pydoc_data`` and, as code, source files of
the standard library (so the code documents depend on the Python version; the prose does not). Then the mess a
web crawl brings is added, each document labelled with its ``kind``:

* ``exact_copy``: a clean document again, with other case and spacing; ``near_copy``: with 2-10% of its words
  replaced, deleted or inserted;
* ``original`` documents framed by a site's header and footer lines (the same few lines on many pages), and
  ``boilerplate`` pages that are nothing else (cookie and privacy notices, error pages);
* machine-made noise: ``spam`` (keyword stuffing), ``lorem`` (placeholder text), ``gibberish`` (random characters)
  and ``word_salad`` (words drawn from the clean documents' vocabulary, fluent-looking but meaningless).

Every number of chapter 10 is computed on this corpus, so it is reproducible to the byte for a given seed.
"""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

from minillama.curate.documents import Document

GOOD_KINDS = frozenset({"original"})
NOISE_KINDS = frozenset({"boilerplate", "spam", "lorem", "gibberish", "word_salad"})
COPY_KINDS = frozenset({"exact_copy", "near_copy"})


SITES = [  # (header lines, footer lines) of made-up web sites: the lines line-level dedup should remove
    (["Home | News | Sport | Weather | Culture | Contact us", "Sign in to your account to save articles"],
     ["We use cookies to improve your experience. Accept all cookies or manage your settings.",
      "Copyright 2024 Example Media Group. All rights reserved."]),
    (["Menu: Books, Music, Film, Theatre, Podcasts and Newsletters",
      "Subscribe to our newsletter for weekly updates from the editors"],
     ["Share this article on Facebook, Twitter, LinkedIn or by email",
      "Privacy policy | Terms of service | Accessibility | Site map"]),
    (["Skip to main content. Search the archive of classic texts"],
     ["This page was last edited on 3 March 2024, at 10:12 (UTC).",
      "Text is available under the Creative Commons Attribution-ShareAlike License"]),
]
BOILERPLATE_PAGES = [
    "Page not found. The page you are looking for might have been removed, had its name changed, or is "
    "temporarily unavailable. Please check the address or go back to the home page.",
    "Cookie policy. We and our partners use cookies and similar technologies to store and access information "
    "on your device, to measure the performance of ads and content, and to develop and improve our products.",
    "Your privacy matters to us. By clicking accept, you agree to the storing of cookies on your device to "
    "enhance site navigation, analyze site usage, and assist in our marketing efforts.",
    "Access denied. You do not have permission to view this page. Please sign in with an account that has "
    "access, or contact the administrator of the site.",
]
SPAM_PRODUCTS = ["cheap watches", "weight loss pills", "crypto signals", "casino bonus", "replica bags",
                 "seo backlinks"]
LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
         "ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
         "fugiat nulla pariatur.")


def shakespeare_documents(max_chars: int = 3000) -> list[str]:
    """tinyshakespeare cut at speech boundaries into documents of at most about ``max_chars`` characters."""
    from minillama.data import load_text

    documents, current = [], ""
    for speech in load_text("tinyshakespeare").split("\n\n"):
        if current and len(current) + len(speech) > max_chars:
            documents.append(current)
            current = ""
        current = f"{current}\n\n{speech}" if current else speech
    return documents + [current] if current else documents


def pydoc_documents() -> list[str]:
    """The help topics of the standard library (``help('FOR')`` and friends), one document each."""
    from pydoc_data.topics import topics

    return [topics[key].strip() for key in sorted(topics)]


def stdlib_code_documents(count: int, rng: random.Random, min_bytes: int = 2000,
                          max_bytes: int = 12000) -> list[tuple[str, str]]:
    """``count`` standard-library source files of moderate size, as ``(relative path, source)``."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts
                   and "tests" not in p.parts and min_bytes <= p.stat().st_size <= max_bytes)
    chosen = rng.sample(files, min(count, len(files)))
    return [(str(p.relative_to(stdlib)), p.read_text(encoding="utf-8", errors="replace")) for p in chosen]


def edit_words(text: str, rate: float, rng: random.Random, vocabulary: list[str]) -> str:
    """Replace, delete or insert about ``rate`` of the words of ``text`` (line breaks kept)."""
    lines = []
    for line in text.split("\n"):
        out = []
        for word in line.split(" "):
            roll = rng.random()
            if roll < rate / 3:
                out.append(rng.choice(vocabulary))
            elif roll < 2 * rate / 3:
                continue
            elif roll < rate:
                out.extend([word, rng.choice(vocabulary)])
            else:
                out.append(word)
        lines.append(" ".join(out))
    return "\n".join(lines)


def _exact_copy(text: str, rng: random.Random) -> str:
    """The same text as far as normalization can tell: another case, doubled spaces, a trailing newline."""
    text = text.upper() if rng.random() < 0.3 else text
    return text.replace(" ", "  ", rng.randint(1, 20)) + "\n"


def _spam(rng: random.Random) -> str:
    product = rng.choice(SPAM_PRODUCTS)
    lines = [f"Buy {product} online! Best {product} at the lowest prices!!!"]
    for _ in range(rng.randint(8, 20)):
        lines.append(rng.choice([
            f"Best {product} deals. Cheap {product}. Discount {product}. Order {product} now!",
            f"Click here to get {product} with free shipping and the best {product} prices",
            f"#{product.replace(' ', '')} #deal #sale #free #best #cheap #buy #now",
        ]))
    return "\n".join(lines)


def _gibberish(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789#$%&*+=<>/\\|~^"
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(rng.randint(80, 300))]
    return "\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))


def _word_salad(rng: random.Random, vocabulary: list[str]) -> str:
    sentences = []
    for _ in range(rng.randint(12, 30)):
        sentence = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 16)))
        sentences.append(sentence[:1].upper() + sentence[1:] + rng.choice([".", ".", ".", "?", "!"]))
    paragraphs = [" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs)


def _framed(text: str, rng: random.Random) -> str:
    header, footer = rng.choice(SITES)
    return "\n".join(header) + "\n\n" + text + "\n\n" + "\n".join(footer)


def build_dirty_corpus(seed: int = 0, code_files: int = 80, copy_rate: float = 0.08, near_copy_rate: float = 0.08,
                       framed_rate: float = 0.4, noise_documents: int = 240) -> list[Document]:
    """The dirty corpus, shuffled with ``seed``: clean documents, their copies, boilerplate and noise (see above)."""
    rng = random.Random(seed)
    clean = [Document(f"shakespeare-{i:04d}", t, "tinyshakespeare", "prose", "original")
             for i, t in enumerate(shakespeare_documents())]
    clean += [Document(f"pydoc-{i:03d}", t, "pydoc_data", "prose", "original") for i, t in enumerate(pydoc_documents())]
    clean += [Document(f"code-{path}", t, "stdlib", "code", "original")
              for path, t in stdlib_code_documents(code_files, rng)]
    # every word occurrence of the clean prose: salad drawn from it has the corpus's word frequencies
    vocabulary = [w for d in clean if d.domain == "prose" for w in d.text.split() if w.isalpha()]

    documents = [Document(d.id, _framed(d.text, rng), d.source, d.domain, d.kind)
                 if d.domain == "prose" and rng.random() < framed_rate else d for d in clean]
    for d in rng.sample(clean, int(copy_rate * len(clean))):
        documents.append(Document(f"{d.id}-copy", _exact_copy(d.text, rng), d.source, d.domain, "exact_copy"))
    for d in rng.sample(clean, int(near_copy_rate * len(clean))):
        edited = edit_words(d.text, rng.uniform(0.02, 0.10), rng, vocabulary)
        documents.append(Document(f"{d.id}-near", edited, d.source, d.domain, "near_copy"))
    makers = [("boilerplate", lambda: rng.choice(BOILERPLATE_PAGES)), ("spam", lambda: _spam(rng)),
              ("lorem", lambda: "\n\n".join([LOREM] * rng.randint(1, 4))), ("gibberish", lambda: _gibberish(rng)),
              ("word_salad", lambda: _word_salad(rng, vocabulary))]
    weights = [0.1, 0.2, 0.1, 0.15, 0.45]
    for i in range(noise_documents):
        kind, make = rng.choices(makers, weights)[0]
        documents.append(Document(f"{kind}-{i:04d}", make(), "generated", "prose", kind))
    rng.shuffle(documents)
    return documents

