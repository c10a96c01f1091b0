"""Offline sync state in the ops store, one module per concern: :mod:`.uploads` (apply a batch),
:mod:`.changes` (the change log terminals download), :mod:`.devices` (terminal status and health) and
:mod:`.conflicts` (the conflict queue and the sync audit trail)."""
