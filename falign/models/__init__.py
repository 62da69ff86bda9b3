"""One model file per paper (pifa, rcsr, ...); sdm.py is the classic cascaded-regression baseline, rcsr_table4.py RCSR's Table 4."""
