"""Seeds are derived, never offset: one helper for every stream a seed feeds."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str, namespace: str = "") -> int:
    """A 32-bit seed for one `purpose` of the trial seed `seed`, by hashing.

    The first 8 hex digits of ``sha256("<namespace>:<purpose>:<seed>")``, with the namespace
    part (and its colon) left out when empty. Hashing rather than offsets (seed + 1, ...) keeps
    the streams of different purposes and neighbouring seeds apart. The spellings that stored
    results depend on (pinned in tests): obesity ``derive_seed(seed, "init")``, ECG
    ``derive_seed(seed, "init", "ecg")``, toy ``derive_seed(seed, "toy")``; a
    sampler's ``derive_seed(proposals_so_far, str(sampler_seed))``.
    """
    text = f"{namespace}:{purpose}:{seed}" if namespace else f"{purpose}:{seed}"
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
