"""Train the byte-level BPE tokenizer on the default corpus and count the corpus's tokens.

    python -m model.tok_train --data data --out data/tokenizer.json

Learns the 16,387-token vocabulary from the train split (every document and message text), saves
it, then records each corpus file's token count (as the trainer renders it) in data/manifest.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.data import corpus_texts, encode_item, load_corpus
from model.tokenizer import VOCAB_SIZE, Tokenizer


def count_tokens(tok: Tokenizer, data_dir: Path) -> dict[str, dict[str, int]]:
    """{split: {source: tokens}} for the corpus in data_dir."""
    return {
        split: {
            name: sum(len(encode_item(tok, item)[0]) for item in items) for name, items in sources.items()
        }
        for split in ("train", "val")
        for sources in [load_corpus(data_dir, split)]
    }


def fill_token_counts(manifest: dict, counts: dict[str, dict[str, int]]) -> None:
    """Each file of a corpus manifest gets its token count from count_tokens' {split: {source: tokens}}."""
    for name, source in manifest["sources"].items():
        for f in source["files"]:
            f["tokens"] = counts[f["split"]][name]


def record_tokens(tok: Tokenizer, data_dir: Path) -> dict:
    """Write the token counts into data_dir/manifest.json; returns the manifest."""
    path = data_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    fill_token_counts(manifest, count_tokens(tok, data_dir))
    manifest["tokenizer_vocab_size"] = tok.vocab_size
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data"), help="corpus folder (python -m model.corpus)")
    p.add_argument(
        "--out", type=Path, default=Path("data/tokenizer.json"), help="where to save the tokenizer"
    )
    p.add_argument("--vocab-size", type=int, default=VOCAB_SIZE, help="vocabulary size, specials included")
    args = p.parse_args()
    tok = Tokenizer.train(corpus_texts(load_corpus(args.data, "train")), vocab_size=args.vocab_size)
    tok.save(args.out)
    print(f"saved {tok.vocab_size:,}-token tokenizer to {args.out}")
    manifest = record_tokens(tok, args.data)
    for name, source in manifest["sources"].items():
        print(f"{name:11s} " + "  ".join(f"{f['split']} {f['tokens']:>10,}" for f in source["files"]))


if __name__ == "__main__":
    main()
