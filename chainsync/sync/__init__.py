"""Offline sync for POS terminals: the upload/download protocol, the conflict policy, and a simulator of
terminals that go offline and come back (``chainsync simulate``)."""
