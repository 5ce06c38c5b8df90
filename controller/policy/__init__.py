"""Policy: pure decisions with time as a parameter (planner, settle, crash loop, backoff).
No I/O; tested with tables and hypothesis."""
