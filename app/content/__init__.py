"""The encyclopedia as data: load, validate, render and search Markdown content (pure)."""
