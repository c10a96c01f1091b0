"""Data access for the routers: the ops store (health, audit) and the serving snapshot (AI tables)."""
