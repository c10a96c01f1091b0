"""State shared by every API process through Redis (``CHAINSYNC_REDIS_URL``; unset: all in-process).

* WebSocket fan-out and replay: :mod:`api.shared.bus` (one stream; a client on any process hears what any
  process published, and resumes with ``?last_seq=`` on any of them).
* Pushes between processes: :mod:`api.shared.control` (pub/sub) carries logout revocations, risk blocks
  and unblocks, admins' IP rule changes, and AI cache clears (on a new snapshot, or an admin's
  ``POST /api/ai/cache/clear``).
* Rate-limit counters: the ``limits`` library's own Redis storage (:mod:`api.security.ratelimit`).

Names of keys and channels: :class:`api.shared.redis.RedisKeys`. :class:`api.shared.state.SharedState`
builds and wires the parts for one process at start-up and stops them at shutdown; routes reach it
through :data:`api.shared.state.SharedStateDep`. Redis down at runtime: each part logs it once and
works locally (see each module); nothing the API acknowledges depends on Redis.

(This file imports nothing, so the rate limiter, on the firewall's path, loads :mod:`api.shared.redis`
without the rest.)
"""
