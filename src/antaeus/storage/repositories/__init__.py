"""All SQL lives here. Each repository works inside a transaction its caller opened."""
