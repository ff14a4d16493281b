"""`python -m model.corpus`: build the default corpus (model/corpus/build.py)."""

from model.corpus.build import main

main()
