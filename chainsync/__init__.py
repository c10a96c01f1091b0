"""ChainSync Analytics: the core shared by the API, the pipelines and the dashboards
(settings, event schemas, the ops store and the serving snapshots)."""

__version__ = "0.1.0"
