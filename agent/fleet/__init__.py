"""Fleets: hosts grouped into classes, one lock each, published; a node's lookup of its lock."""
