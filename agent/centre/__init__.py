"""The central side: subscriber, store, coverage aggregation, map, export."""
