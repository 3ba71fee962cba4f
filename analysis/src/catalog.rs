//! The hardware catalog: per system, GPUs per node and rack, power and $/GPU-hour per cost
//! tier, each with its source. The embedded `catalog.toml` holds InferenceX's public
//! constants (DESIGN.md §6); a user's file replaces or adds systems by name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One system's economics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    pub name: String,
    /// Other names results use for it (InferenceX rows say `gb200` for `gb200-nvl72`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    pub gpu: String,
    pub gpus_per_node: u32,
    pub gpus_per_rack: u32,
    pub tdp_kw: f64,
    /// Provisioned power per GPU, facility overhead included.
    pub all_in_kw_per_gpu: f64,
    /// $/GPU-hour by tier (`owning`, `rental`, or any name a catalog gives).
    pub cost_per_gpu_hour: BTreeMap<String, f64>,
    pub source: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The price of energy, for the energy part of $/M tokens (provisioned and measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub electricity_usd_per_kwh: Option<f64>,
    #[serde(default, rename = "system")]
    pub systems: Vec<System>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {reason}")]
    File { path: String, reason: String },
    #[error("unknown system {name:?} (the catalog has: {known})")]
    UnknownSystem { name: String, known: String },
    #[error("system {system} has no cost tier {tier:?} (it has: {known})")]
    UnknownTier {
        system: String,
        tier: String,
        known: String,
    },
    #[error("catalog: system {system}: {field} {reason}")]
    Invalid {
        system: String,
        field: &'static str,
        reason: String,
    },
}

const EMBEDDED: &str = include_str!("catalog.toml");

/// Suffixes InferenceX appends to a hardware name for the runner that served it, stripped
/// in this order as the dashboard does (`hwToGpuKey` in InferenceX-app's
/// `packages/db/src/etl/normalizers.ts`), after a trailing `_<digits>`.
const RUNNER_SUFFIXES: [&str; 12] = [
    "-trt",
    "-multinode-slurm",
    "-multinode",
    "-nvs",
    "-disagg",
    "-amds",
    "-amd",
    "-nvd",
    "-dgxc-slurm",
    "-dgxc",
    "-nb",
    "-nv",
];

/// `name` without its runner suffixes (lower case).
fn without_runner(name: &str) -> String {
    let mut base = name.to_ascii_lowercase().replace('_', "-");
    // A trailing runner number, `_2` (now `-2`).
    if let Some((head, tail)) = base.rsplit_once('-')
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
    {
        base = head.to_owned();
    }
    for suffix in RUNNER_SUFFIXES {
        if let Some(b) = base.strip_suffix(suffix) {
            base = b.to_owned();
        }
    }
    base
}

impl Catalog {
    /// The embedded catalog.
    pub fn embedded() -> Catalog {
        // The embedded file is checked by a unit test; an error here is a build defect.
        toml::from_str(EMBEDDED).unwrap_or_else(|e| panic!("embedded catalog.toml: {e}"))
    }

    /// The embedded catalog, with `file`'s systems replacing or joining it when given.
    pub fn load(file: Option<&Path>) -> Result<Catalog, CatalogError> {
        match file {
            Some(path) => Catalog::with_file(path),
            None => Ok(Catalog::embedded()),
        }
    }

    /// The embedded catalog with `path`'s systems replacing or joining it.
    pub(crate) fn with_file(path: &Path) -> Result<Catalog, CatalogError> {
        let file = |reason: String| CatalogError::File {
            path: path.display().to_string(),
            reason,
        };
        let text =
            rackload_input::read_text_capped(path, rackload_input::caps::CONFIG, "a catalog")
                .map_err(|e| file(e.to_string()))?;
        let extra: Catalog = toml::from_str(&text)
            .map_err(|e| file(rackload_input::located(&text, e.span(), e.message())))?;
        let mut cat = Catalog::embedded();
        if extra.electricity_usd_per_kwh.is_some() {
            cat.electricity_usd_per_kwh = extra.electricity_usd_per_kwh;
        }
        for s in extra.systems {
            match cat.systems.iter_mut().find(|x| x.name == s.name) {
                Some(x) => *x = s,
                None => cat.systems.push(s),
            }
        }
        cat.validate()?;
        Ok(cat)
    }

    pub fn validate(&self) -> Result<(), CatalogError> {
        if let Some(p) = self
            .electricity_usd_per_kwh
            .filter(|p| !(p.is_finite() && (0.0..=100.0).contains(p)))
        {
            return Err(CatalogError::Invalid {
                system: "(all)".into(),
                field: "electricity_usd_per_kwh",
                reason: format!("{p} is not a price from 0 to 100 $/kWh"),
            });
        }
        for s in &self.systems {
            let bad = |field: &'static str, reason: &str| CatalogError::Invalid {
                system: s.name.clone(),
                field,
                reason: reason.to_owned(),
            };
            if s.gpus_per_node == 0 || s.gpus_per_rack == 0 {
                return Err(bad("gpus_per_node/gpus_per_rack", "must be at least 1"));
            }
            if !(s.all_in_kw_per_gpu.is_finite() && s.all_in_kw_per_gpu > 0.0) {
                return Err(bad("all_in_kw_per_gpu", "must be a positive number"));
            }
            if s.cost_per_gpu_hour
                .values()
                .any(|c| !(c.is_finite() && *c > 0.0))
            {
                return Err(bad("cost_per_gpu_hour", "must hold positive numbers"));
            }
        }
        Ok(())
    }

    /// The system named `name`, or one of its aliases, in any case; InferenceX's runner
    /// suffixes (`-trt`, `-nv`, `-amd`, `-multinode`, … also with `_`) are ignored.
    pub fn system(&self, name: &str) -> Result<&System, CatalogError> {
        let is = |s: &System, n: &str| {
            s.name.eq_ignore_ascii_case(n) || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(n))
        };
        let bare = without_runner(name);
        self.systems
            .iter()
            .find(|s| is(s, name))
            .or_else(|| self.systems.iter().find(|s| is(s, &bare)))
            .ok_or_else(|| CatalogError::UnknownSystem {
                name: name.to_owned(),
                known: self
                    .systems
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl System {
    pub fn cost(&self, tier: &str) -> Result<f64, CatalogError> {
        self.cost_per_gpu_hour
            .get(tier)
            .copied()
            .ok_or_else(|| CatalogError::UnknownTier {
                system: self.name.clone(),
                tier: tier.to_owned(),
                known: self
                    .cost_per_gpu_hour
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_has_the_inferencex_constants() {
        let c = Catalog::embedded();
        c.validate().expect("valid");
        let gb = c.system("gb200-nvl72").expect("gb200");
        assert_eq!((gb.gpus_per_rack, gb.all_in_kw_per_gpu), (72, 2.10));
        assert_eq!(gb.cost("owning").expect("tier"), 2.21);
        assert_eq!(gb.cost("rental").expect("tier"), 3.30);
        let mi = c.system("MI355X").expect("case-insensitive");
        assert_eq!(
            (mi.cost("owning").expect("tier"), mi.all_in_kw_per_gpu),
            (1.48, 2.65)
        );
        let b300 = c.system("b300").expect("b300");
        let b200 = c.system("b200").expect("b200");
        assert!(
            (b300.cost("owning").expect("t") - 1.2 * b200.cost("owning").expect("t")).abs() < 1e-9
        );
        // InferenceX's own hardware names, with and without runner suffixes.
        for (hw, name) in [
            ("gb200", "gb200-nvl72"),
            ("GB300", "gb300-nvl72"),
            ("gb200-trt", "gb200-nvl72"),
            ("b200-nv", "b200"),
            ("mi355x-amd", "mi355x"),
            ("h200_trt", "h200"),
            ("b200-multinode-slurm", "b200"),
            ("gb200-dgxc-slurm", "gb200-nvl72"),
            ("mi355x-amds_2", "mi355x"),
            ("b300-nb", "b300"),
        ] {
            assert_eq!(
                c.system(hw).map(|s| s.name.as_str()).ok(),
                Some(name),
                "{hw}"
            );
        }
        let e = c.system("tpu").expect_err("unknown").to_string();
        assert!(e.contains("gb200-nvl72"), "{e}");
        let e = gb.cost("spot").expect_err("no tier").to_string();
        assert!(e.contains("owning, rental"), "{e}");
    }

    #[test]
    fn a_file_replaces_and_adds_systems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"[[system]]
name = "b200"
gpu = "B200"
gpus_per_node = 8
gpus_per_rack = 64
tdp_kw = 1.0
all_in_kw_per_gpu = 2.0
cost_per_gpu_hour = { owning = 1.5, spot = 0.9 }
source = "our contract"
"#,
        )
        .expect("write");
        let c = Catalog::with_file(&path).expect("loads");
        let b = c.system("b200").expect("b200");
        assert_eq!(
            (b.gpus_per_rack, b.cost("spot").expect("custom tier")),
            (64, 0.9)
        );
        assert!(c.system("mi355x").is_ok(), "the rest stays");
        std::fs::write(&path, "[[system]]\nname = 1\n").expect("write");
        let e = Catalog::with_file(&path).expect_err("bad").to_string();
        assert!(e.contains("c.toml"), "{e}");
    }
}
