"""The ways pueflow runs, above the core: replay, produce, consume, tune, demo."""
