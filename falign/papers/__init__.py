"""Each paper's published numbers, transcribed once with their table and figure ids."""
