//! `cargo xtask bench --sweep [size|readers|inflight|all] [--quick] [--out <dir>]`: runs
//! `emberctl bench --sweep` (full mode unless `--quick`), keeps its table as
//! `<dir>/sweep.json` and `<dir>/sweep.csv`, and draws one SVG per sweep with plotters:
//! `<dir>/sweep-<name>.svg`, p50 per message against the sweep's x, one line per row
//! (the baselines included), both axes logarithmic. `<dir>` is `target/bench` unless
//! `--out` says otherwise (`--out docs/plots` for the figures docs/benchmarks.md shows).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use plotters::prelude::*;

/// One line of a plot: a row's name and its points (x, p50 ns).
type Series = (String, Vec<(f64, f64)>);

/// What each sweep's x axis is.
fn x_label(sweep: &str) -> &'static str {
    match sweep {
        "size" => "payload bytes",
        "readers" => "broadcast readers",
        "inflight" => "rpc requests in flight",
        _ => "x",
    }
}

/// Runs the sweep and draws it; returns the files written.
pub fn sweep(args: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut which = "all".to_string();
    let mut quick = false;
    let mut out = PathBuf::from("target/bench");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            s if !s.starts_with('-') => which = s.to_string(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let csv = out.join("sweep.csv");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["run", "--release", "-q", "-p", "ember-ipc-cli", "--", "bench", "--json", "--sweep", &which])
        .arg(if quick { "--quick" } else { "--full" })
        .arg("--csv")
        .arg(&csv)
        .stderr(Stdio::inherit());
    println!("$ {cmd:?}");
    let o = cmd.output().map_err(|e| format!("cannot run emberctl bench: {e}"))?;
    if !o.status.success() {
        return Err(format!("emberctl bench --sweep {which} failed: {}", o.status));
    }
    let json_path = out.join("sweep.json");
    std::fs::write(&json_path, &o.stdout).map_err(|e| format!("{}: {e}", json_path.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| format!("emberctl's JSON: {e}"))?;
    let rows = v["rows"].as_array().ok_or("emberctl's JSON has no rows")?;
    let mut written = vec![json_path, csv];
    for sweep in ["size", "readers", "inflight"] {
        let mut series: Vec<Series> = Vec::new();
        for r in rows.iter().filter(|r| r["sweep"] == sweep) {
            let (Some(name), Some(x), Some(y)) = (r["mechanism"].as_str(), r["x"].as_f64(), r["p50_ns"].as_f64())
            else {
                continue;
            };
            match series.iter_mut().find(|(n, _)| n == name) {
                Some((_, pts)) => pts.push((x, y)),
                None => series.push((name.to_string(), vec![(x, y)])),
            }
        }
        if series.is_empty() {
            continue;
        }
        let path = out.join(format!("sweep-{sweep}.svg"));
        draw(&path, sweep, &series).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    for f in &written {
        println!("wrote {}", f.display());
    }
    Ok(written)
}

/// One log-log chart of `series` into `path`.
fn draw(path: &Path, sweep: &str, series: &[Series]) -> Result<(), Box<dyn std::error::Error>> {
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("emberctl bench --sweep {sweep}: p50 per message"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), (y0 * 0.7..y1 * 1.5).log_scale())?;
    chart.configure_mesh().x_desc(x_label(sweep)).y_desc("ns (log)").draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
