//! Paged KV cache: block pool with reference counts (`block_pool`), per-sequence block tables
//! and slot mapping (`manager`), the hashed prefix cache of full blocks (`prefix`), and the
//! device K/V memory (`cache`).
//! May use: tensor, ops.

pub mod block_pool;
pub mod cache;
pub mod manager;
pub mod prefix;
