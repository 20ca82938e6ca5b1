//! Writes of K/V rows into a paged per-layer cache laid out [num_slots, kv_dim]
//! (num_slots = num_blocks * block_size; slot = block * block_size + offset).

/// `cache[slot_mapping[i]] = src[i]` for every row i with a non-negative slot.
pub fn kv_write(cache: &mut [f32], kv_dim: usize, src: &[f32], slot_mapping: &[i32]) {
    for (row, &slot) in src.chunks(kv_dim).zip(slot_mapping) {
        if slot >= 0 {
            let s = slot as usize * kv_dim;
            cache[s..s + kv_dim].copy_from_slice(row);
        }
    }
}

/// Copy whole blocks (copy-on-write of a shared partial block).
pub fn copy_blocks(cache: &mut [f32], kv_dim: usize, block_size: usize, pairs: &[(u32, u32)]) {
    let bl = block_size * kv_dim;
    for &(from, to) in pairs {
        let (f, t) = (from as usize * bl, to as usize * bl);
        cache.copy_within(f..f + bl, t);
    }
}
