"""What the dashboards compute from the snapshot, one module per domain (sales, forecasts, anomalies,
inventory, security, sync, system, insights); reading the snapshot itself is :mod:`dashboards.data`."""
