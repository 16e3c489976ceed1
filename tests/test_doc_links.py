"""Every relative link in the project's Markdown files points at a file that exists, and an
``#anchor`` at a heading of that file (GitHub's slugs), so the README's manual stays navigable."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "tflite_models" / "README.md",
        *sorted((ROOT / "tflite_models" / "cifar10").glob("*/README.md")), *sorted((ROOT / "study").glob("*/*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def github_slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown):
    """The anchors GitHub gives a file's headings, duplicates numbered ``-1``, ``-2``..."""
    seen, result = {}, set()
    for line in FENCE.sub("", markdown).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = github_slug(match.group(1))
            result.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return result


def relative_links(path):
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_github_slug_matches_known_anchors():
    assert github_slug("Test-time mirror and shift averaging (`quantize --mirror`)") == \
        "test-time-mirror-and-shift-averaging-quantize---mirror"
    assert github_slug("`benchmarks/train_throughput.py`") == "benchmarkstrain_throughputpy"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### A") == {"a", "a-1", "a-2"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)
