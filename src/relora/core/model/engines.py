"""Serving engines' facts that both the adapter writer and preflight need, kept in one place.

Each fact names the engine source it was read from; serve/preflight.py holds the rules built on them.
"""

from __future__ import annotations

ENGINES = ("vllm", "sglang", "lorax")
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py: max_lora_rank's allowed values
VLLM_DEFAULT_MAX_RANK = 16  # vllm/config/lora.py: LoRAConfig.max_lora_rank's default


def vllm_rank_at_least(r: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that holds rank r (its largest when none does)."""
    return min((x for x in VLLM_RANKS if x >= r), default=VLLM_RANKS[-1])


def rank_warnings(r: int) -> list[str]:
    """vLLM serves only ranks up to --max-lora-rank, which takes a fixed set of values (default 16)."""
    if r in VLLM_RANKS:
        return [] if r <= VLLM_DEFAULT_MAX_RANK else [
            f"r={r}: vLLM needs --max-lora-rank {r} (its default is {VLLM_DEFAULT_MAX_RANK})"]
    nearest = min(VLLM_RANKS, key=lambda x: (abs(x - r), -x))  # a tie goes up, which keeps the capacity
    return [f"r={r} is not one of vLLM's ranks {list(VLLM_RANKS)}: the nearest is {nearest} (training.rank={nearest}); "
            f"as it is, vLLM serves it under --max-lora-rank {vllm_rank_at_least(r)}"]
