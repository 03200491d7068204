"""Proving an environment works: run its interpreter on a probe script and judge the output."""
