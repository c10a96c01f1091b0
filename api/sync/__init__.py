"""Offline sync for the API: upload validation and the snapshot part of downloads. Storage lives in
:mod:`chainsync.ops_store.sync` (uploads, changes, devices, conflicts); the route handlers in
:mod:`api.routes.sync`."""
