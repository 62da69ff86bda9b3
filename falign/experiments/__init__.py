"""Each chapter's experiments: scale configurations and the train/evaluate functions its notebooks call."""
