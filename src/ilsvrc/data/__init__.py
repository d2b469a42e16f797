"""Data, in the order it flows: folders -> statistics -> transforms -> loaders."""
