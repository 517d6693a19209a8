"""Account classifications: categories assigned by versioned, declarative rules over effective access."""
