"""Canonical JSON: the one text of a value that trial keys, batching groups and messages use.

A leaf module (it imports nothing of sweeper), so that any module can use it without
reaching `sweeper.plan` and, through it, the study and its validation.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
