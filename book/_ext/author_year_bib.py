"""Author-year labels for the bibliography, the same text in the citations and in the list.

sphinxcontrib-bibtex's `author_year` citations read "Touvron et al., 2023" for two different papers, and the list
then numbers them [1], [2]. This extension registers a pybtex style, `author_year_labels`: the `plain` style with
labels "Touvron et al. 2023a" / "Touvron et al. 2023b" (letters in the list's sort order where author and year
collide). With `bibtex_reference_style: label`, a {cite} shows that same label.
"""

from __future__ import annotations

from collections import Counter
from string import ascii_lowercase

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _surname(person) -> str:
    return Text.from_latex(" ".join(person.prelast_names + person.last_names)).render_as("text")


class AuthorYearLabels(BaseLabelStyle):
    def format_label(self, entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_surname(p) for p in persons]
        if not names:
            who = entry.fields.get("organization", entry.key)
        elif len(names) > 2 or "others" in names:
            who = f"{names[0]} et al."
        else:
            who = " and ".join(names)
        return f"{who} {entry.fields.get('year', 'n.d.')}"

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        totals, seen = Counter(labels), Counter()
        for label in labels:
            if totals[label] > 1:
                seen[label] += 1
                label += ascii_lowercase[seen[label] - 1]
            yield label


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabels


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year_labels", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
