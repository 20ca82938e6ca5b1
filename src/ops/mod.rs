//! Public op API: validate once, dispatch on device. One file per op family.
