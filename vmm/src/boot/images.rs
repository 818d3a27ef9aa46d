//! The guest images built by `build.rs` and embedded in the binary, so `vmm` runs with no
//! other files: the kernel and the user programs.

/// The default kernel (ELF32 i386, PVH), also left at `target/guest/kernel.elf`.
pub static KERNEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kernel.elf"));

include!(concat!(env!("OUT_DIR"), "/user_programs.rs"));

/// A built-in user program by name.
pub fn user_program(name: &str) -> Option<&'static [u8]> {
    USER_PROGRAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_kernel_is_an_elf32_i386_pvh_image() {
        let image =
            crate::boot::loader::parse_kernel(KERNEL, crate::arch::layout::phystop(256 << 20))
                .unwrap();
        assert_eq!(image.segments[0].paddr, crate::arch::layout::EXTMEM);
        assert!(image.entry >= crate::arch::layout::EXTMEM as u32);
    }

    #[test]
    fn hello_is_built_in() {
        let hello = user_program("hello").expect("hello is embedded");
        assert_eq!(&hello[..4], b"\x7fELF");
        assert_eq!(hello[4], 1, "ELFCLASS32");
        assert!(user_program("no-such-program").is_none());
    }
}
