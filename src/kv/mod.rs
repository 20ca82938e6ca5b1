//! Paged KV cache: block pool, per-sequence block tables, device K/V storage.
