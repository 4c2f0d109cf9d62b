//! `aeraki`: the control plane binary (serve, validate, render, status, demo).

fn main() {}
