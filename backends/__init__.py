"""The torch-backend catalog (data) and the pure selection over it."""
