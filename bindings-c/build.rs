//! `libember.so` gets the soname `libember.so.0`: programs linked against it keep working
//! across compatible releases, and the install layout links `libember.so` to it.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libember.so.0");
}
