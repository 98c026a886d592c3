//! The header's seed list (the processes found when tracing started),
//! read one process at a time: a recording may hold millions, and each
//! becomes analysis state at once instead of first filling a list.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::trace::host_facts::SeedProcess;

/// Calls `each` with every process of the `seed` array of the metadata
/// JSON `json`, in order, skipping the other fields without keeping them.
pub fn for_each_seed(
    json: &[u8],
    each: &mut dyn FnMut(SeedProcess),
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    de::Deserializer::deserialize_map(&mut de, MetaSeeds(each))?;
    de.end()
}

/// The metadata object, of which only `seed` is read.
struct MetaSeeds<'a>(&'a mut dyn FnMut(SeedProcess));

impl<'de> Visitor<'de> for MetaSeeds<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the recording's metadata object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "seed" {
                map.next_value_seed(SeedList(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// The `seed` array, handed over element by element.
struct SeedList<'a>(&'a mut dyn FnMut(SeedProcess));

impl<'de> DeserializeSeed<'de> for SeedList<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SeedList<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of processes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(process) = seq.next_element::<SeedProcess>()? {
            (self.0)(process);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{recording::Meta, trace::comm::Comm};

    fn seed(pid: u32) -> SeedProcess {
        SeedProcess {
            pid,
            ppid: 1,
            comm: Comm::from_str_lossy("x"),
            zombie: pid.is_multiple_of(2),
            ..SeedProcess::default()
        }
    }

    #[test]
    fn every_seed_comes_in_order_whatever_the_field_order() {
        let meta = Meta {
            hostname: "h".into(),
            seed: (1..=5).map(seed).collect(),
            ..Meta::default()
        };
        let json = serde_json::to_vec(&meta).unwrap();
        let mut got = Vec::new();
        for_each_seed(&json, &mut |s| got.push(s)).unwrap();
        assert_eq!(got, meta.seed);
        // A crafted file may put `seed` first.
        let mut first = Vec::new();
        for_each_seed(
            br#"{"seed":[{"pid":3,"ppid":1,"comm":"a","zombie":true}],"hostname":"h"}"#,
            &mut |s| first.push(s.pid),
        )
        .unwrap();
        assert_eq!(first, vec![3]);
        let mut none = 0;
        for_each_seed(br#"{"hostname":"h"}"#, &mut |_| none += 1).unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn a_malformed_seed_is_an_error() {
        let mut n = 0;
        assert!(for_each_seed(br#"{"seed":[{"pid":"x"}]}"#, &mut |_| n += 1).is_err());
        assert!(for_each_seed(br#"{"seed":7}"#, &mut |_| n += 1).is_err());
        assert!(for_each_seed(br#"[]"#, &mut |_| n += 1).is_err());
    }
}
