"""Skeleton data: raw-format parsers, the standard preprocessing, hacm's store and loaders.

Kept import-free so that `import hacm.data.store` does not pull in torch or the converters.
"""
