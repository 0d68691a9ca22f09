//! The few MessagePack values BullMQ's scripts unpack (`cmsgpack.unpack`): maps of
//! options and flat arrays of job fields, written as msgpackr writes them.

use rmp::encode;

pub enum V<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Str(&'a str),
    Map(Vec<(&'a str, V<'a>)>),
    Arr(Vec<V<'a>>),
}

pub fn pack(v: &V<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write(&mut out, v);
    out
}

fn write(out: &mut Vec<u8>, v: &V<'_>) {
    // Writing into a Vec cannot fail.
    match v {
        V::Nil => encode::write_nil(out).expect("vec"),
        V::Bool(b) => encode::write_bool(out, *b).expect("vec"),
        V::Int(i) if *i >= 0 => {
            encode::write_uint(out, *i as u64).expect("vec");
        }
        V::Int(i) => {
            encode::write_sint(out, *i).expect("vec");
        }
        V::Str(s) => encode::write_str(out, s).expect("vec"),
        V::Map(entries) => {
            encode::write_map_len(out, entries.len() as u32).expect("vec");
            for (k, v) in entries {
                encode::write_str(out, k).expect("vec");
                write(out, v);
            }
        }
        V::Arr(items) => {
            encode::write_array_len(out, items.len() as u32).expect("vec");
            for v in items {
                write(out, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_msgpack() {
        assert_eq!(pack(&V::Map(vec![("a", V::Int(1))])), vec![0x81, 0xa1, b'a', 0x01]);
        assert_eq!(pack(&V::Int(-1)), vec![0xff]);
        assert_eq!(pack(&V::Int(30000)), vec![0xcd, 0x75, 0x30]);
        assert_eq!(
            pack(&V::Arr(vec![V::Str("x"), V::Nil, V::Bool(true)])),
            vec![0x93, 0xa1, b'x', 0xc0, 0xc3]
        );
    }
}
