"""The peak-memory helper (refimpl.measure) sees memory this process touched."""

import numpy as np

from refimpl.measure import peak_rss_mib


def test_peak_rss_grows_with_touched_memory():
    before = peak_rss_mib()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page written
    after = peak_rss_mib()
    assert block.sum() == block.size
    assert after >= before
    assert after >= 64  # the process now holds at least the block
