"""Business insights for people: an insight's evidence as readable text."""

from __future__ import annotations

import json
from typing import Any


def evidence_text(evidence: Any) -> str:
    """An insight's evidence for people: a JSON object becomes 'key: value · key: value'."""
    if isinstance(evidence, str) and evidence.startswith("{"):
        try:
            parsed = json.loads(evidence)
        except ValueError:
            return evidence
        parts = []
        for key, value in parsed.items():
            label = key.replace("_", " ")
            if isinstance(value, float):
                value = f"{value / 100:,.2f}" if key.endswith("_cents") else f"{value:,.3g}"
            elif isinstance(value, int) and key.endswith("_cents"):
                value = f"{value / 100:,.2f}"
            parts.append(f"{label.removesuffix(' cents')}: {value}")
        return " · ".join(parts)
    return str(evidence)
