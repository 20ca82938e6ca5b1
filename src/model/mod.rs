//! The Higgs Audio v2 generation model.
