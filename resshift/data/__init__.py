"""Benchmark data sets: cards (what a set is), sources (where its files come from), the streaming
loader every method reads through, degradations and builders.

Public entry points::

    from resshift.data import open_dataset, list_cards, load_card
    ds = open_dataset("val-sr")          # mirror / cache / explicit root
    for sample in ds.shard(rank, world):  # Sample(name, lr, hr, meta)
        ...
"""

from resshift.data.cards import CardError, DatasetCard, cards_dir, list_cards, load_card
from resshift.data.loader import DatasetError, Sample, SRDataset, open_dataset

__all__ = [
    "CardError",
    "DatasetCard",
    "DatasetError",
    "SRDataset",
    "Sample",
    "cards_dir",
    "list_cards",
    "load_card",
    "open_dataset",
]
