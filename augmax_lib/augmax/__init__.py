"""AugMax's inner maximisation and the two naive baselines of its strategy ablation (AdvMix, AdvMax)."""
from ._engine import AttackOptions, AugMaxResult
from .advmix import advmax_attack, advmix_attack, magnitude_ranges
from .attack import augmax_attack

__all__ = ["AttackOptions", "AugMaxResult", "augmax_attack", "advmix_attack", "advmax_attack", "magnitude_ranges"]
