"""Offline sync for POS terminals: the upload/download protocol and the conflict policy (the simulator of
terminals that go offline and come back, ``chainsync simulate``, is a tool: :mod:`tools.simulator`)."""
