//! One hand-built damaged file per class of damage, each asserting the
//! specific error the reader (or writer) gives.

use wasm_chord_core::gguf::{
    parse_header, parse_header_with_limits, Array, GgufError, GgufFile, GgufWriter, Limits, Value,
    ValueType, MAX_ARRAY_LEN, MAX_KEY_LEN, MAX_STRING_LEN,
};
use wasm_chord_core::GgmlType;

/// Builds GGUF bytes by hand, so that any field can hold any value.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A key with a `u32` value.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(ValueType::U32.id()).u32(v)
    }
    /// A tensor info.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to `align` and appends `n` data bytes.
    fn data(&mut self, align: usize, n: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self.0.extend((0..n).map(|i| (i * 7 + 3) as u8));
        self
    }
    fn parse(&self) -> Result<wasm_chord_core::gguf::GgufHeader, GgufError> {
        let r = parse_header(&self.0, self.0.len() as u64);
        // The whole-file reader agrees with the header parser.
        let f = GgufFile::from_bytes(self.0.clone());
        assert_eq!(r.is_ok(), f.is_ok(), "{r:?} vs {f:?}");
        r
    }
}

/// A valid file: one key, two F32 tensors of 8 elements.
fn valid() -> Raw {
    let mut r = Raw::new(3, 2, 1);
    r.kv_u32("a.b", 1)
        .tensor("x", &[8], 0, 0)
        .tensor("y", &[4, 2], 0, 32)
        .data(32, 64);
    r
}

#[test]
fn the_base_file_is_valid() {
    let h = valid().parse().unwrap();
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.metadata.get_u32("a.b").unwrap(), 1);
}

#[test]
fn bad_magic() {
    let mut r = valid();
    r.0[0] = b'g';
    assert!(matches!(r.parse(), Err(GgufError::BadMagic { found }) if &found == b"gGUF"));
}

#[test]
fn versions() {
    for (v, ok) in [(2, true), (3, true)] {
        let mut r = valid();
        r.0[4..8].copy_from_slice(&u32::to_le_bytes(v));
        assert_eq!(r.parse().is_ok(), ok);
    }
    let mut r = valid();
    r.0[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(r.parse(), Err(GgufError::VersionOne)));
    // A big-endian v3 file reads as 0x03000000.
    r.0[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(
        r.parse(),
        Err(GgufError::BigEndian {
            version: 0x0300_0000
        })
    ));
    for v in [0u32, 4, 0xFFFF] {
        r.0[4..8].copy_from_slice(&v.to_le_bytes());
        assert!(
            matches!(r.parse(), Err(GgufError::UnsupportedVersion { version }) if version == v)
        );
    }
}

#[test]
fn truncated_prefix_versus_truncated_file() {
    let r = valid();
    let len = r.0.len() as u64;
    // 110 bytes end inside the data offset of tensor `y` (at 109..117).
    // As a prefix of a complete file: the caller can fetch more.
    assert!(matches!(
        parse_header(&r.0[..110], len),
        Err(GgufError::Truncated {
            offset: 109,
            needed: 117,
            available: 110
        })
    ));
    // As the whole file: it ends inside the header.
    let cut = &r.0[..110];
    assert!(matches!(
        parse_header(cut, 110),
        Err(GgufError::UnexpectedEof {
            offset: 109,
            len: 8,
            file_len: 110
        })
    ));
    assert!(matches!(
        GgufFile::from_bytes(cut.to_vec()),
        Err(GgufError::UnexpectedEof { .. })
    ));
    // Cut before the metadata: the tensor infos can no longer fit.
    assert!(matches!(
        parse_header(&r.0[..30], 30),
        Err(GgufError::CountExceedsFile {
            what: "tensor count",
            count: 2,
            offset: 8,
            remaining: 6
        })
    ));
}

#[test]
fn counts_that_cannot_fit() {
    let mut r = Raw::new(3, 1 << 40, 0);
    r.data(32, 64);
    assert!(matches!(
        r.parse(),
        Err(GgufError::CountExceedsFile { what: "tensor count", count, offset: 8, .. }) if count == 1 << 40
    ));
    let mut r = Raw::new(3, 0, u64::MAX);
    r.kv_u32("a", 1);
    assert!(matches!(
        r.parse(),
        Err(GgufError::CountExceedsFile {
            what: "metadata count",
            count: u64::MAX,
            ..
        })
    ));
    // An array whose elements cannot fit in the file.
    let mut r = Raw::new(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::Array.id())
        .u32(ValueType::U64.id())
        .u64(1000)
        .u64(1);
    assert!(matches!(
        r.parse(),
        Err(GgufError::ArrayExceedsFile { key, len: 1000, offset: 41, .. }) if key == "k"
    ));
    // Strings need at least their length prefix each.
    let mut r = Raw::new(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::Array.id())
        .u32(ValueType::String.id())
        .u64(3)
        .str(b"ab");
    assert!(matches!(
        r.parse(),
        Err(GgufError::ArrayExceedsFile { len: 3, .. })
    ));
}

#[test]
fn caps_on_keys_strings_and_arrays() {
    let mut r = Raw::new(3, 0, 1);
    r.u64(MAX_KEY_LEN + 1).bytes(&[b'a'; 16]);
    assert!(
        matches!(r.parse(), Err(GgufError::KeyTooLong { offset: 24, len, .. }) if len == MAX_KEY_LEN + 1)
    );

    let mut r = Raw::new(3, 0, 1);
    r.str(b"s")
        .u32(ValueType::String.id())
        .u64(MAX_STRING_LEN + 1)
        .bytes(b"abc");
    assert!(matches!(r.parse(), Err(GgufError::StringTooLong { key, .. }) if key == "s"));

    let mut r = Raw::new(3, 0, 1);
    r.str(b"a")
        .u32(ValueType::Array.id())
        .u32(ValueType::U8.id())
        .u64(MAX_ARRAY_LEN + 1);
    assert!(
        matches!(r.parse(), Err(GgufError::ArrayTooLong { len, .. }) if len == MAX_ARRAY_LEN + 1)
    );
}

#[test]
fn nesting_depth() {
    // Four levels parse; a fifth is refused, by the reader and the writer.
    for (levels, ok) in [(4, true), (5, false)] {
        let mut r = Raw::new(3, 0, 1);
        r.str(b"n").u32(ValueType::Array.id());
        for _ in 1..levels {
            r.u32(ValueType::Array.id()).u64(1);
        }
        r.u32(ValueType::U8.id()).u64(1).u8(9);
        let got = r.parse();
        assert_eq!(got.is_ok(), ok, "{levels}: {got:?}");
        if !ok {
            assert!(matches!(got, Err(GgufError::NestingTooDeep { max: 4, .. })));
        }
        let mut a = Array::U8(vec![9]);
        for _ in 1..levels {
            a = Array::Array(vec![a]);
        }
        let mut w = GgufWriter::new();
        w.metadata_mut().insert("n", Value::Array(a.clone()));
        match w.to_bytes() {
            Ok(bytes) => {
                assert!(ok);
                assert_eq!(
                    bytes,
                    r.0.iter()
                        .copied()
                        .chain(std::iter::repeat(0))
                        .take(bytes.len())
                        .collect::<Vec<_>>()
                );
                let f = GgufFile::from_bytes(bytes).unwrap();
                assert_eq!(f.metadata().get_array("n").unwrap(), &a);
            }
            Err(e) => assert!(
                !ok && matches!(e, GgufError::NestingTooDeep { .. }),
                "{e:?}"
            ),
        }
    }
}

#[test]
fn metadata_memory_cap() {
    let mut r = Raw::new(3, 0, 2);
    r.str(b"s").u32(ValueType::String.id()).str(&[b'x'; 600]);
    r.str(b"t")
        .u32(ValueType::Array.id())
        .u32(ValueType::U32.id())
        .u64(100);
    r.bytes(&[1; 400]);
    let limits = Limits {
        max_metadata_bytes: 1000,
        ..Limits::default()
    };
    assert!(matches!(
        parse_header_with_limits(&r.0, r.0.len() as u64, &limits),
        Err(GgufError::MetadataTooLarge { key, max: 1000 }) if key == "t"
    ));
    assert!(parse_header(&r.0, r.0.len() as u64).is_ok());
}

#[test]
fn keys_empty_duplicate_and_invalid_utf8() {
    let mut r = Raw::new(3, 0, 1);
    r.str(b"").u32(ValueType::U8.id()).u8(1).bytes(&[0; 8]);
    assert!(matches!(r.parse(), Err(GgufError::EmptyKey { offset: 24 })));

    let mut r = Raw::new(3, 0, 2);
    r.kv_u32("a.b", 1).kv_u32("a.b", 2);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateKey { key }) if key == "a.b"));

    let mut r = Raw::new(3, 0, 1);
    r.str(b"a\xffb").u32(ValueType::U8.id()).u8(1);
    assert!(
        matches!(r.parse(), Err(GgufError::InvalidUtf8 { offset: 32, context }) if context == "key")
    );

    let mut r = Raw::new(3, 0, 1);
    r.str(b"tok")
        .u32(ValueType::Array.id())
        .u32(ValueType::String.id())
        .u64(2)
        .str(b"ok")
        .str(b"\xc3");
    assert!(
        matches!(r.parse(), Err(GgufError::InvalidUtf8 { context, .. }) if context.contains("tok"))
    );
}

#[test]
fn unknown_value_types_and_bad_bools() {
    let mut r = Raw::new(3, 0, 1);
    r.str(b"k").u32(13).u32(0);
    assert!(matches!(
        r.parse(),
        Err(GgufError::UnknownValueType {
            id: 13,
            offset: 33,
            ..
        })
    ));
    let mut r = Raw::new(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::Array.id())
        .u32(0xFFFF_FFFF)
        .u64(0);
    assert!(matches!(
        r.parse(),
        Err(GgufError::UnknownValueType {
            id: 0xFFFF_FFFF,
            ..
        })
    ));

    let mut r = Raw::new(3, 0, 1);
    r.str(b"k").u32(ValueType::Bool.id()).u8(2);
    assert!(matches!(
        r.parse(),
        Err(GgufError::InvalidBool { byte: 2, .. })
    ));
    let mut r = Raw::new(3, 0, 1);
    r.str(b"k")
        .u32(ValueType::Array.id())
        .u32(ValueType::Bool.id())
        .u64(3)
        .bytes(&[1, 0, 7]);
    assert!(matches!(
        r.parse(),
        Err(GgufError::InvalidBool {
            byte: 7,
            offset: 51,
            ..
        })
    ));
}

#[test]
fn alignment_type_and_value() {
    let mut r = Raw::new(3, 0, 1);
    r.str(b"general.alignment").u32(ValueType::U64.id()).u64(32);
    assert!(matches!(
        r.parse(),
        Err(GgufError::AlignmentType {
            found: ValueType::U64
        })
    ));
    for a in [0u32, 3, 48] {
        let mut r = Raw::new(3, 0, 1);
        r.kv_u32("general.alignment", a);
        assert!(
            matches!(r.parse(), Err(GgufError::BadAlignment { alignment }) if alignment == a as u64)
        );
    }
    let mut r = Raw::new(3, 1, 1);
    r.kv_u32("general.alignment", 64)
        .tensor("x", &[8], 0, 0)
        .data(64, 32);
    assert_eq!(r.parse().unwrap().alignment, 64);
    // The writer refuses the same.
    let mut w = GgufWriter::new();
    w.metadata_mut().insert("general.alignment", Value::U32(12));
    assert!(matches!(
        w.to_bytes(),
        Err(GgufError::BadAlignment { alignment: 12 })
    ));
    w.metadata_mut().insert("general.alignment", Value::I32(16));
    assert!(matches!(
        w.to_bytes(),
        Err(GgufError::AlignmentType {
            found: ValueType::I32
        })
    ));
}

#[test]
fn tensor_names() {
    let mut r = Raw::new(3, 2, 0);
    r.tensor("x", &[8], 0, 0)
        .tensor("x", &[8], 0, 32)
        .data(32, 64);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateTensor { name }) if name == "x"));

    let long = "n".repeat(64);
    let mut r = Raw::new(3, 1, 0);
    r.tensor(&long, &[8], 0, 0).data(32, 32);
    assert!(matches!(
        r.parse(),
        Err(GgufError::TensorNameTooLong {
            len: 64,
            max: 63,
            offset: 24
        })
    ));
    let mut r = Raw::new(3, 1, 0);
    r.tensor(&long[1..], &[8], 0, 0).data(32, 32);
    assert!(r.parse().is_ok());

    let mut r = Raw::new(3, 1, 0);
    r.str(b"\xfe").u32(1).u64(8).u32(0).u64(0).data(32, 32);
    assert!(
        matches!(r.parse(), Err(GgufError::InvalidUtf8 { offset: 32, context }) if context == "tensor name")
    );
}

#[test]
fn tensor_shapes() {
    for dims in [&[][..], &[1, 1, 1, 1, 1]] {
        let mut r = Raw::new(3, 1, 0);
        r.tensor("x", dims, 0, 0).data(32, 32);
        assert!(
            matches!(r.parse(), Err(GgufError::BadDimCount { n_dims, .. }) if n_dims as usize == dims.len())
        );
    }
    let mut r = Raw::new(3, 1, 0);
    r.tensor("x", &[8, 0], 0, 0).data(32, 32);
    assert!(matches!(r.parse(), Err(GgufError::ZeroDim { dims, .. }) if dims == [8, 0]));

    // Element count past i64::MAX, and byte size past u64::MAX.
    for dims in [
        &[1u64 << 32, 1 << 32][..],
        &[1 << 62, 2],
        &[1 << 31, 1 << 31, 2],
    ] {
        let mut r = Raw::new(3, 1, 0);
        r.tensor("x", dims, 0, 0).data(32, 32);
        assert!(
            matches!(r.parse(), Err(GgufError::ShapeOverflow { .. })),
            "{dims:?}"
        );
    }
    let mut r = Raw::new(3, 1, 0);
    r.tensor("x", &[256, 1 << 55], GgmlType::Q4_K.id(), 0)
        .data(32, 32);
    assert!(matches!(r.parse(), Err(GgufError::ShapeOverflow { .. })));

    for id in [4, 31, 40, u32::MAX] {
        let mut r = Raw::new(3, 1, 0);
        r.tensor("x", &[8], id, 0).data(32, 32);
        assert!(matches!(r.parse(), Err(GgufError::UnknownGgmlType { id: i, .. }) if i == id));
    }

    let mut r = Raw::new(3, 1, 0);
    r.tensor("x", &[100, 2], GgmlType::Q4_K.id(), 0)
        .data(32, 4096);
    assert!(matches!(
        r.parse(),
        Err(GgufError::RowNotBlockMultiple {
            row_len: 100,
            block_size: 256,
            ggml_type: GgmlType::Q4_K,
            ..
        })
    ));
}

#[test]
fn tensor_placement() {
    let mut r = Raw::new(3, 1, 0);
    r.tensor("x", &[8], 0, 16).data(32, 64);
    assert!(matches!(
        r.parse(),
        Err(GgufError::MisalignedTensor {
            offset: 16,
            alignment: 32,
            ..
        })
    ));

    // One byte short of the second tensor's end.
    let mut r = valid();
    r.0.pop();
    assert!(matches!(
        r.parse(),
        Err(GgufError::TensorOutOfBounds { tensor, len: 32, .. }) if tensor == "y"
    ));
    // An offset so large that start + size overflows.
    let mut r = Raw::new(3, 1, 0);
    r.tensor("x", &[8], 0, u64::MAX - 31).data(32, 32);
    assert!(matches!(
        r.parse(),
        Err(GgufError::TensorOutOfBounds { .. })
    ));

    // The header ends where padding to the data section would pass the end.
    let mut r = Raw::new(3, 1, 0);
    r.tensor("x", &[1], 0, 0);
    assert!(matches!(
        r.parse(),
        Err(GgufError::DataOffsetOutOfBounds {
            data_offset: 64,
            file_len: 57
        })
    ));

    let mut r = Raw::new(3, 2, 0);
    r.tensor("x", &[16], 0, 0)
        .tensor("y", &[8], 0, 32)
        .data(32, 64);
    assert!(matches!(
        r.parse(),
        Err(GgufError::OverlappingTensors { first, second }) if first == "x" && second == "y"
    ));
    // Same offset; also listed out of order.
    let mut r = Raw::new(3, 3, 0);
    r.tensor("z", &[8], 0, 64)
        .tensor("x", &[8], 0, 0)
        .tensor("y", &[8], 0, 0)
        .data(32, 96);
    assert!(matches!(
        r.parse(),
        Err(GgufError::OverlappingTensors { .. })
    ));
    // Out of order but disjoint is fine (the reader does not require llama.cpp's packing).
    let mut r = Raw::new(3, 2, 0);
    r.tensor("y", &[8], 0, 32)
        .tensor("x", &[8], 0, 0)
        .data(32, 64);
    assert!(r.parse().is_ok());
}

#[test]
fn writer_refuses_bad_tensors_and_keys() {
    let mut w = GgufWriter::new();
    assert!(matches!(w.set_version(1), Err(GgufError::VersionOne)));
    assert!(matches!(
        w.set_version(4),
        Err(GgufError::UnsupportedVersion { version: 4 })
    ));
    assert!(matches!(
        w.add_tensor("q", &[100], GgmlType::Q8_0, vec![0u8; 34]),
        Err(GgufError::RowNotBlockMultiple {
            row_len: 100,
            block_size: 32,
            ..
        })
    ));
    assert!(matches!(
        w.add_tensor("q", &[64], GgmlType::Q8_0, vec![0u8; 34]),
        Err(GgufError::DataSizeMismatch {
            expected: 68,
            found: 34,
            ..
        })
    ));
    assert!(matches!(
        w.add_tensor("z", &[0], GgmlType::F32, Vec::new()),
        Err(GgufError::ZeroDim { .. })
    ));
    assert!(matches!(
        w.add_tensor("d", &[1; 5], GgmlType::F32, vec![0u8; 4]),
        Err(GgufError::BadDimCount { .. })
    ));
    assert!(matches!(
        w.add_tensor("n".repeat(64), &[1], GgmlType::F32, vec![0u8; 4]),
        Err(GgufError::TensorNameTooLong { .. })
    ));
    w.add_tensor("q", &[64], GgmlType::Q8_0, vec![0u8; 68])
        .unwrap();
    assert!(matches!(
        w.add_tensor("q", &[1], GgmlType::F32, vec![0u8; 4]),
        Err(GgufError::DuplicateTensor { name }) if name == "q"
    ));
    w.metadata_mut().insert("", Value::U8(0));
    assert!(matches!(w.to_bytes(), Err(GgufError::EmptyKey { .. })));
    w.metadata_mut().remove("");
    assert_eq!(
        GgufFile::from_bytes(w.to_bytes().unwrap())
            .unwrap()
            .tensors()
            .len(),
        1
    );
}
