"""The ground every stage stands on: errors, settings, files, limits, faults, the reporter port."""
