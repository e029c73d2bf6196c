"""Recommendation and text models.

Submodules are imported on use, so ``import vidrec_lab.models`` loads
neither PyTorch nor ``transformers``:

* :mod:`vidrec_lab.models.baselines`: popularity, ItemKNN, EASE, BPR.
* :mod:`vidrec_lab.models.two_tower`: hybrid two-tower recommender.
* :mod:`vidrec_lab.models.finetune`: BERT-family fine-tuning with Lightning,
  the frozen-encoder reference and masked language modelling.
"""
