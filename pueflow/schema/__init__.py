"""The data contracts: Batch, row schemas and Output, the series Registry."""
