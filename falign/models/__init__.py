"""One model file per paper (pifa, rcsr, ...) plus their baselines."""
