//! The `kapacitor-pagertree` command line (being written).

fn main() {
    println!("kapacitor-pagertree {}", env!("CARGO_PKG_VERSION"));
}
