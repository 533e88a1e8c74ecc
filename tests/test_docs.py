"""Cross-references into docs/ALGORITHM.md resolve, and nothing cites files outside the repo.

Code comments cite the method as `docs/ALGORITHM.md §N`; the file promises stable section
numbers with an `<a id="sec-N">` anchor each. A renumbered or deleted section, or a citation of
notes that are not in the repository, fails here.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALGORITHM = ROOT / "docs" / "ALGORITHM.md"
SOURCES = sorted(p for pattern in ("adapt_tf/**/*.py", "scripts/*.py", "tests/*.py",
                                   "gin_configs/**/*.gin", "docs/*.md", "README.md")
                 for p in ROOT.glob(pattern))


def _sections() -> set[int]:
    text = ALGORITHM.read_text()
    anchors = {int(anchor) for anchor, heading in
               re.findall(r'<a id="sec-(\d+)"></a>\n## §(\d+) ', text) if anchor == heading}
    headings = {int(n) for n in re.findall(r"^## §(\d+) ", text, flags=re.MULTILINE)}
    assert anchors == headings, "every section needs its anchor, right above its heading"
    return headings


def test_sections_are_numbered_one_to_n_with_anchors():
    sections = _sections()
    assert sections == set(range(1, len(sections) + 1))


def test_every_citation_of_algorithm_md_names_an_existing_section():
    sections = _sections()
    cited = {}
    for path in SOURCES:
        text = path.read_text()
        for match in re.finditer(r"ALGORITHM\.md (§\d+(?:(?:, | and |-)§\d+)*)", text):
            for number in re.findall(r"§(\d+)", match.group(1)):
                cited.setdefault(int(number), []).append(str(path.relative_to(ROOT)))
    assert len(cited) >= 8  # the comments cite most sections
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"citations of sections that do not exist: {missing}"


def test_nothing_cites_notes_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in SOURCES
                 if p.name != "test_docs.py" and re.search(r"PAPER_NOTES|DESIGN §|DESIGN\.md",
                                                           p.read_text())]
    assert not offenders
