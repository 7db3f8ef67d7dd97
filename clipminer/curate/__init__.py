"""The last mile from mined clips to a dataset: shots, embeddings, dedup, review, export.

:mod:`~clipminer.curate.catalog` reads what find-clips left in ``OUT``; the other
modules add one step each and keep their records beside it (``OUT/duplicates.csv``,
``OUT/review.sqlite``), never changing the per-video files.
"""
