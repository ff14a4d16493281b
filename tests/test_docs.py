"""The project's own documents link to files that exist: README.md's longer records live in docs/, and
a moved or renamed page must not leave a dead link behind."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    ROOT / "DEVELOPERS.md",
    ROOT / "model" / "README.md",
    ROOT / "infra" / "README.md",
]
PAGES += sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)


def local_targets(page: Path) -> list[str]:
    """The page's links that point into the repository (no scheme, no bare anchor), without anchors."""
    links = LINK.findall(page.read_text())
    return [
        link.split("#")[0] for link in links if "://" not in link and not link.startswith(("#", "mailto:"))
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_to_a_file_of_the_repository_resolves(page):
    assert page.is_file()
    missing = [target for target in local_targets(page) if not (page.parent / target).exists()]
    assert missing == []


def test_the_readme_links_its_records():
    """The records moved out of README.md are reached from it."""
    assert {"docs/training-runs.md", "docs/serving-rounds.md"} <= set(local_targets(ROOT / "README.md"))


def test_the_readmes_corpus_table_counts_what_the_default_model_trained_on():
    """Each source's train and val tokens in "The corpus and its mix" are the shipped checkpoint's record
    (its config.json, from the manifest `make corpus` writes): the courtesy row had gone stale."""
    import json

    card = json.loads((ROOT / "model" / "checkpoints" / "default" / "config.json").read_text())
    sources = card["data"]["sft"]["corpus"]["sources"]
    rows = re.findall(
        r"^\| (\w+) \| (?:dialogue|prose) \|.*\| ([\d,]+) \| ([\d,]+) \|$",
        (ROOT / "README.md").read_text(),
        re.M,
    )
    assert {name for name, _, _ in rows} == set(sources)
    for name, train, val in rows:
        tokens = {f["split"]: f["tokens"] for f in sources[name]["files"]}
        assert (int(train.replace(",", "")), int(val.replace(",", ""))) == (tokens["train"], tokens["val"]), (
            name
        )
