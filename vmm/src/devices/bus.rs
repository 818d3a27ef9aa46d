//! What every port device is to the bus ([`PortDevice`]), and the little-endian port-value
//! helpers the devices share.

use vm_memory::GuestMemoryMmap;

use crate::outcome::Request;

/// A device on the I/O-port bus.
pub trait PortDevice {
    /// Whether `port` is one of this device's.
    fn owns(&self, port: u16) -> bool;
    /// An `in` of `data.len()` bytes from `port`.
    fn read(&mut self, port: u16, data: &mut [u8], mem: &GuestMemoryMmap);
    /// An `out` of `data` to `port`.
    fn write(&mut self, port: u16, data: &[u8], mem: &GuestMemoryMmap) -> Request;
}

/// The little-endian value of an `out`'s 1, 2 or 4 bytes.
pub fn le_value(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = data.len().min(4);
    b[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(b)
}

/// Fills an `in`'s bytes with `value`, little-endian.
pub fn fill_le(data: &mut [u8], value: u32) {
    let bytes = value.to_le_bytes();
    for (i, d) in data.iter_mut().enumerate() {
        *d = *bytes.get(i).unwrap_or(&0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_values_are_little_endian_of_any_width() {
        assert_eq!(le_value(&[0x34, 0x12]), 0x1234);
        assert_eq!(le_value(&[1, 2, 3, 4]), 0x0403_0201);
        let mut d = [0u8; 2];
        fill_le(&mut d, 0xAABB_CCDD);
        assert_eq!(d, [0xDD, 0xCC]);
    }
}
