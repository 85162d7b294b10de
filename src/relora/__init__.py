"""relora: re-adapt LoRA adapters to an updated base model (arXiv 2606.02606)."""

__version__ = "0.1.0"
