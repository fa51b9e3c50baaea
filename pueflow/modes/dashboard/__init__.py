"""Operators' view: local web pages over the Parquet store, and the EED report's HTML."""
