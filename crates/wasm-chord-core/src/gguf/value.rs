//! GGUF metadata values and the typed accessors that check declared types.

use super::GgufError;

/// The type tag of a GGUF metadata value (`enum gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `u8`
    U8 = 0,
    /// `i8`
    I8 = 1,
    /// `u16`
    U16 = 2,
    /// `i16`
    I16 = 3,
    /// `u32`
    U32 = 4,
    /// `i32`
    I32 = 5,
    /// `f32`
    F32 = 6,
    /// `bool` (one byte, 0 or 1)
    Bool = 7,
    /// length-prefixed UTF-8 string
    String = 8,
    /// typed, length-prefixed array
    Array = 9,
    /// `u64`
    U64 = 10,
    /// `i64`
    I64 = 11,
    /// `f64`
    F64 = 12,
}

impl ValueType {
    /// The tag for a stored id, or `None` when out of range.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The stored id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The gguf-py name of the type (`UINT32`, `STRING`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `u8`
    U8(u8),
    /// `i8`
    I8(i8),
    /// `u16`
    U16(u16),
    /// `i16`
    I16(i16),
    /// `u32`
    U32(u32),
    /// `i32`
    I32(i32),
    /// `f32`
    F32(f32),
    /// `bool`
    Bool(bool),
    /// UTF-8 string
    String(String),
    /// typed array (possibly of arrays)
    Array(Array),
    /// `u64`
    U64(u64),
    /// `i64`
    I64(i64),
    /// `f64`
    F64(f64),
}

/// A typed metadata array. Arrays keep their element type so that large
/// tables (token scores, merges) are stored flat, not as boxed values.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// `u8[]`
    U8(Vec<u8>),
    /// `i8[]`
    I8(Vec<i8>),
    /// `u16[]`
    U16(Vec<u16>),
    /// `i16[]`
    I16(Vec<i16>),
    /// `u32[]`
    U32(Vec<u32>),
    /// `i32[]`
    I32(Vec<i32>),
    /// `f32[]`
    F32(Vec<f32>),
    /// `bool[]`
    Bool(Vec<bool>),
    /// `string[]`
    String(Vec<String>),
    /// array of arrays (nested; depth is capped by the reader)
    Array(Vec<Array>),
    /// `u64[]`
    U64(Vec<u64>),
    /// `i64[]`
    I64(Vec<i64>),
    /// `f64[]`
    F64(Vec<f64>),
}

impl Value {
    /// The declared type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as an unsigned integer when it is of any integer type and
    /// non-negative (GGUF writers differ in which width they use for counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float when it is `f32` or `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }
}

impl Array {
    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Metadata key/value pairs in file order, with typed look-ups.
///
/// Every accessor checks the declared type and returns
/// [`GgufError::MissingKey`] or [`GgufError::WrongType`] rather than
/// converting silently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
}

macro_rules! scalar_getter {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&self, key: &str) -> Result<$ty, GgufError> {
            match self.require(key)? {
                Value::$variant(v) => Ok(v.clone()),
                other => Err(wrong(key, ValueType::$variant, other.value_type())),
            }
        }
    };
}

macro_rules! array_getter {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $name(&self, key: &str) -> Result<&[$ty], GgufError> {
            match self.get_array(key)? {
                Array::$variant(v) => Ok(v),
                other => Err(GgufError::WrongArrayType {
                    key: key.to_owned(),
                    expected: ValueType::$variant,
                    found: other.element_type(),
                }),
            }
        }
    };
}

fn wrong(key: &str, expected: ValueType, found: ValueType) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found,
    }
}

impl Metadata {
    /// An empty set of metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`. Readers reject duplicates before they get here;
    /// for writers replacing is the useful behaviour.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            self.entries.push((key, value));
        }
    }

    /// Appends `key` without looking for an existing entry; the reader has
    /// already rejected duplicates with a hash set.
    pub(crate) fn push_unique(&mut self, key: String, value: Value) {
        self.entries.push((key, value));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_owned()))
    }

    scalar_getter!(
        /// A `u8` value.
        get_u8, U8, u8);
    scalar_getter!(
        /// An `i8` value.
        get_i8, I8, i8);
    scalar_getter!(
        /// A `u16` value.
        get_u16, U16, u16);
    scalar_getter!(
        /// An `i16` value.
        get_i16, I16, i16);
    scalar_getter!(
        /// A `u32` value.
        get_u32, U32, u32);
    scalar_getter!(
        /// An `i32` value.
        get_i32, I32, i32);
    scalar_getter!(
        /// An `f32` value.
        get_f32, F32, f32);
    scalar_getter!(
        /// A `bool` value.
        get_bool, Bool, bool);
    scalar_getter!(
        /// A `u64` value.
        get_u64, U64, u64);
    scalar_getter!(
        /// An `i64` value.
        get_i64, I64, i64);
    scalar_getter!(
        /// An `f64` value.
        get_f64, F64, f64);

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            other => Err(wrong(key, ValueType::String, other.value_type())),
        }
    }

    /// An array value of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            other => Err(wrong(key, ValueType::Array, other.value_type())),
        }
    }

    /// A non-negative integer of any integer width (counts such as
    /// `*.context_length` are written as u32 by some tools and u64 by others).
    pub fn get_count(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| wrong(key, ValueType::U64, v.value_type()))
    }

    array_getter!(
        /// A `string[]` value.
        get_str_array, String, String);
    array_getter!(
        /// An `f32[]` value.
        get_f32_array, F32, f32);
    array_getter!(
        /// An `i32[]` value.
        get_i32_array, I32, i32);
    array_getter!(
        /// A `u32[]` value.
        get_u32_array, U32, u32);
    array_getter!(
        /// A `u8[]` value.
        get_u8_array, U8, u8);
    array_getter!(
        /// A `bool[]` value.
        get_bool_array, Bool, bool);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_accessors_check_declared_type() {
        let mut m = Metadata::new();
        m.insert("a.u32", Value::U32(7));
        m.insert("a.str", Value::String("x".into()));
        m.insert("a.scores", Value::Array(Array::F32(vec![1.0, 2.0])));
        assert_eq!(m.get_u32("a.u32").unwrap(), 7);
        assert_eq!(m.get_count("a.u32").unwrap(), 7);
        assert!(matches!(
            m.get_u64("a.u32"),
            Err(GgufError::WrongType {
                expected: ValueType::U64,
                found: ValueType::U32,
                ..
            })
        ));
        assert!(matches!(m.get_str("nope"), Err(GgufError::MissingKey(k)) if k == "nope"));
        assert_eq!(m.get_f32_array("a.scores").unwrap(), &[1.0, 2.0]);
        assert!(matches!(
            m.get_i32_array("a.scores"),
            Err(GgufError::WrongArrayType {
                found: ValueType::F32,
                ..
            })
        ));
        assert!(matches!(
            m.get_count("a.str"),
            Err(GgufError::WrongType { .. })
        ));
    }

    #[test]
    fn insert_replaces_and_keeps_order() {
        let mut m = Metadata::new();
        m.insert("b", Value::U8(1));
        m.insert("a", Value::U8(2));
        m.insert("b", Value::U8(3));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(m.get_u8("b").unwrap(), 3);
    }
}
