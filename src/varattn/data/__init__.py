"""Data, below the models: ``textio`` (checked reading and atomic writing) and ``vocab`` serve every task;
``text/`` is parallel text (tokenising, BPE, prepared folders, batching, the synthetic corpus, Pharaoh
links); ``vqa/`` is visual question answering data; ``corpora/`` holds the recipes that download and
prepare named corpora (a registry the CLI takes its choices from).

Text flows ``corpora.recipes.prepare`` -> a prepared folder (``text.build``) -> ``text.prepared.load_prepared``
-> ``text.batching.TokenBatcher`` -> ``text.batching.collate`` -> tensors for the model.
"""
