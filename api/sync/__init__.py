"""Offline sync for the API: upload validation and the snapshot part of downloads. Storage lives in
:mod:`chainsync.ops_store.sync`; the route handlers in :mod:`api.routes.sync`."""
