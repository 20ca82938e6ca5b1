//! `higgs bench`.
