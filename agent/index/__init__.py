"""The package index: pages, wheel metadata, downloads, the wheel store, the HTTP cache."""
