"""``ViewInfo``: what ``featurekit list`` and ``featurekit show`` print about a view version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featurekit.registry import Materialization, ViewVersion


@dataclass(frozen=True)
class ViewInfo:
    """A view as the registry knows it: applied version, features and last materialization."""

    name: str
    version: ViewVersion
    metadata: dict[str, Any]
    materialization: Materialization | None

    def describe(self, code: bool = False) -> str:
        """Several lines about the view version; with ``code``, its source text as applied."""
        v = self.version
        definition = v.definition
        lines = [f"{self.name} v{v.version} (code {v.code_hash}, defined at {v.location})"]
        if definition.get("kind") == "feature_set":
            lines.append("  feature set: " + ", ".join(definition["requests"]))
            if self.metadata.get("description"):
                lines.append(f"  description: {self.metadata['description']}")
            return "\n".join(lines)
        if definition.get("kind") == "on_demand":
            lines.append("  inputs: " + ", ".join(f"{i['view']}:{i['feature']}" for i in definition["inputs"]))
            lines.append("  request: " + (", ".join(f"{k} ({t})" for k, t in definition["request"].items()) or "none"))
        else:
            lines += [
                f"  entity keys: {', '.join(definition['join_keys'])}",
                *([] if v.is_window else [f"  ttl: {_ttl_text(definition['ttl_us'])}"]),
                f"  source: {definition['source'].get('path') or definition['source'].get('query')}",
            ]
        if v.is_window:
            window = definition["window"]
            lines.append(f"  windows: start inclusive, end exclusive, delay {window['delay_us'] / 1e6:g}s")
            lines.append("  features: " + ", ".join(f"{f} ({v.feature_type(f)})" for f in v.features))
        else:
            lines.append("  features: " + ", ".join(f"{f} ({definition['schema'][f]})" for f in v.features))
        if self.metadata.get("description"):
            lines.append(f"  description: {self.metadata['description']}")
        if self.metadata.get("checks"):
            listed = ", ".join(f"{c['name']} ({c['threshold']})" for c in self.metadata["checks"])
            lines.append(f"  checks (on failure: {self.metadata.get('on_check_failure', 'fail')}): {listed}")
        m = self.materialization
        if definition.get("kind") == "on_demand":
            pass
        elif m is None:
            lines.append("  materialized: never")
        else:
            upto = m.watermark.isoformat() if m.watermark else "(pushes only)"
            lines.append(
                f"  materialized: up to {upto} (data version {m.data_version}, "
                f"last window [{m.window_start.isoformat()}, {m.window_end.isoformat()}), {m.rows} rows)"
            )
        if code:
            lines.append("  code:")
            lines += [f"    {line}" for line in v.source_text.rstrip().splitlines()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _ttl_text(ttl_us: int | None) -> str:
    if ttl_us is None:
        return "none"
    seconds = ttl_us / 1_000_000
    return f"{seconds / 86_400:g} days" if seconds >= 86_400 else f"{seconds:g} s"
