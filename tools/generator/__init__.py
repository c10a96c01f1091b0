"""Seeded synthetic store chain: catalog, daily sales with seasonality, holidays, promotions and
stock-outs, inventory, security and sync events, and labelled planted anomalies.

Output layout of :func:`generate_chain` (column names are the event models' field names):

- ``manifest.json``: format_version, params, seed, row_counts, generated_at
- ``stores.parquet``, ``products.parquet``, ``cashiers.parquet``, ``devices.parquet``
- ``sales_lines/part-NNN.parquet`` (one part per calendar month): one row per line item; ``event_id`` and
  ``transaction_id`` repeat on every line of a transaction; ``transaction_id`` is
  ``<store>-<local YYYYMMDD>-<n>``
- ``inventory.parquet``, ``security.parquet``, ``sync.parquet``: one row per event
- ``request_stats.parquet``: the API's request log over the last 14 days, one row per minute x route with
  requests (columns of the ops store's ``request_stats``; see :mod:`tools.generator.requests`)
- ``ground_truth.parquet``: planted anomalies (anomaly_id, anomaly_type, store_id, product_id, cashier_id,
  source_ip, route, start_at, end_at, description), times in UTC

Inventory is exact: between two counts of a store-product, stock moves only by the receipts,
adjustments, recorded shrinkage and ``kind = 'sale'`` lines in between (refunded goods go back to the
supplier, voids never left the shelf), except where ``shrinkage`` is planted.
"""

from tools.generator.chain import FORMAT_VERSION, GenerationSummary, generate_chain

__all__ = ["FORMAT_VERSION", "GenerationSummary", "generate_chain"]
