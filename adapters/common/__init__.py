"""What every upstream adapter shares: retry policy, failure classes, safe logging."""
