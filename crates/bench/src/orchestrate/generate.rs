//! `isthmus bench generate`: writes a synthetic mesh as registry files and says what it
//! wrote.

use crate::error::BenchError;
use crate::generate::{self, Shape, Written};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `bench generate` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// The mesh's size.
    pub shape: Shape,
    /// Output directory.
    pub out: PathBuf,
}

/// Writes the mesh and prints a one-line summary.
pub fn run(opts: &GenerateOptions) -> Result<(), BenchError> {
    let start = Instant::now();
    let w = generate::write(&opts.out, opts.shape)?;
    println!("{}", summary(&w, start.elapsed().as_secs_f64(), &opts.out));
    Ok(())
}

/// What was written, in how many seconds, where.
fn summary(w: &Written, seconds: f64, out: &Path) -> String {
    format!(
        "wrote {} objects ({:.1} MB) for {} clusters in {:.2}s under {}",
        w.objects,
        w.bytes as f64 / 1e6,
        w.registries.len(),
        seconds,
        out.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_objects_megabytes_and_clusters() {
        let w = Written {
            registries: vec![
                ("cluster1".into(), "/o/cluster1".into()),
                ("cluster2".into(), "/o/cluster2".into()),
            ],
            objects: 42_000,
            bytes: 12_340_000,
        };
        assert_eq!(
            summary(&w, 1.5, Path::new("/o")),
            "wrote 42000 objects (12.3 MB) for 2 clusters in 1.50s under /o"
        );
    }
}
