"""vidrec_lab: a notebook suite for video recommendation with pretrained models.

The notebooks in ``notebooks/`` tell the story; this package does the work.
Submodules are imported on use so ``import vidrec_lab`` stays light.
"""

__version__ = "0.1.0"
