"""Seeded synthetic store chain: catalog, daily sales with seasonality, holidays, promotions and
stock-outs, inventory, security and sync events, and labelled planted anomalies (Parquet)."""

from chainsync.generator.chain import FORMAT_VERSION, GenerationSummary, generate_chain

__all__ = ["FORMAT_VERSION", "GenerationSummary", "generate_chain"]
