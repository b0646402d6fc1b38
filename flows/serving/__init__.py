"""`flexo serve`: a release behind an OpenAI-compatible HTTP API, with per-request experts,
entitlements, withdrawal on the next request, attribution records and dynamic batching."""
