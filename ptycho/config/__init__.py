"""The configuration contract shared by both backends (brief §1.1)."""
