"""The API's security layer, one module per concern:

- :mod:`.principals`: authentication (a user JWT or a device API key) and authorization (roles);
- :mod:`.tokens`: access and refresh tokens, the only module that creates or reads a JWT; revocations;
- :mod:`.firewall`: the request middleware (addresses, IP lists, risk blocks, per-address limits, audit of
  what responses say) and :mod:`.scanner`, its suspicious-input detection;
- :mod:`.checks`: per-principal limits and revoked sessions, and re-checks for long-lived connections;
- :mod:`.risk`: the risk engine (scores of the shared model in :mod:`chainsync.risk`, blocks);
- :mod:`.ratelimit` (the ``limits`` library), :mod:`.ipfilter`, :mod:`.audit` and :mod:`.auth_trail`,
  :mod:`.sampling` (data-access sampling), :mod:`.device_keys` (the device-key cache);
- :mod:`.state`: the wiring, built at start-up.
"""
