//! TICKscript lambda expressions (being written).
