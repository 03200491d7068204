"""The package index: pages, wheel metadata, downloads, the HTTP cache, index configuration."""
